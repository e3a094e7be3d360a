/* preprocess.h - the preprocess stage: train/test CSVs to dataset.safetensors.
 *
 * Every train column except the id, the targets, the group column and the
 * `drop` list is a feature.  A column is numeric when every non-missing value
 * (train and test) parses wholly as a finite number under the C locale, else
 * categorical.  Numeric columns are imputed (mean, median of train, or
 * fill_value); categorical columns are one-hot (categories in sorted byte
 * order of the train values; a missing value, or a test value unseen in
 * train, is all zeros) or ordinal (the index, -1 when missing or unseen),
 * ordinal when they have more than max_onehot categories.  With standardize,
 * numeric and ordinal columns are scaled by train mean and std (std 0 -> 1).
 * Feature names: "col" (numeric, ordinal), "col=value" (one-hot),
 * "col:missing" (the 0/1 missing indicator, right after the column's own).
 * Targets: binary and multiclass classes sorted (numerically when all are
 * numbers), y = class index; regression y = value; multilabel either one
 * column of space-separated tags (an empty field is no tags) or several 0/1
 * columns, y [n, labels].  Writes the layout described in artifact.h.
 */
#ifndef KP_PREPROCESS_H
#define KP_PREPROCESS_H

#include <stddef.h>
#include <stdio.h>
#include "../lib/params.h"
#include "../pipeline/config.h"
#include "stage.h"

/* The preprocess stage type (keys: categorical, max_onehot, impute, fill_value,
 * missing_indicator, standardize, drop, na_values). */
extern const kp_stage_ops kp_stage_preprocess;

/* Reads comp->train and comp->test, builds the features and targets with the
 * options in opts (stage keys; absent keys take their defaults) and writes
 * the dataset artifact to out_path atomically.  log (may be NULL) gets a
 * summary.  0 or a negative kp_status with a message naming file, row and
 * column in err. */
int kp_preprocess_build(const kp_competition *comp, const kp_params *opts,
                        const char *out_path, FILE *log, char *err, size_t errlen);

#endif

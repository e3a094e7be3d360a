#!/bin/sh
# Builds data/titanic/ (Kaggle's Titanic layout: 891 train / 418 test rows,
# PassengerId, Survived 0/1 scored by accuracy) from the TitanicSurvival data
# of Debian's r-cran-cardata (carData, GPL >= 2; data compiled by Thomas
# Cason, titanic3).  Needs Rscript; run once, the output is committed.
set -e
mkdir -p data/titanic
Rscript -e '
library(carData)
d <- TitanicSurvival
set.seed(1912)
d <- d[sample(nrow(d)), ]
out <- data.frame(PassengerId = seq_len(nrow(d)), Name = rownames(d), Sex = d$sex,
                  Age = d$age, Pclass = d$passengerClass,
                  Survived = ifelse(d$survived == "yes", 1L, 0L))
tr <- out[1:891, ]; te <- out[892:nrow(out), ]
write.csv(tr, "data/titanic/train.csv", row.names = FALSE, na = "")
write.csv(te[, 1:5], "data/titanic/test.csv", row.names = FALSE, na = "")
write.csv(te[, c("PassengerId", "Survived")], "data/titanic/test_labels.csv", row.names = FALSE)
write.csv(data.frame(PassengerId = te$PassengerId, Survived = 0L),
          "data/titanic/sample_submission.csv", row.names = FALSE)
'

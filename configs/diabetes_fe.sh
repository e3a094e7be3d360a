#!/bin/sh
# Feature engineering for configs/diabetes.yaml, run by its `fe` command stage:
# appends bmi*bp as a new column to the train and test CSVs.
# usage: diabetes_fe.sh TRAIN_IN TEST_IN TRAIN_OUT TEST_OUT
set -e
add() {
    awk -F, 'BEGIN { OFS = "," } NR == 1 { print $0, "bmi_x_bp"; next } { print $0, $4 * $5 }' "$1" > "$2.tmp"
    mv "$2.tmp" "$2"
}
mkdir -p "$(dirname "$3")" "$(dirname "$4")"
add "$1" "$3"
add "$2" "$4"

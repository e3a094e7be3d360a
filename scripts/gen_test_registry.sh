#!/bin/sh
# Writes the C table of test groups found as KP_TEST_GROUP(name) in the given files.
names=$(sed -n 's/^KP_TEST_GROUP(\([a-z0-9_]*\)).*/\1/p' "$@")
echo '#include "kp_test.h"'
for n in $names; do echo "int kp_test_group_$n(void);"; done
echo 'const kp_test_group kp_test_groups[] = {'
for n in $names; do echo "    {\"$n\", kp_test_group_$n},"; done
echo '    {0, 0}'
echo '};'

#!/bin/sh
# Builds and runs one test group alone, from only the sources it needs, so a
# module can be tested while other modules are half-written:
#   sh tests/unit.sh GROUP tests/test_GROUP.c lib/x.c models/y.c ...
set -e
group=$1; shift
out=/tmp/kp_unit_$group
mkdir -p $out
printf '#include "kp_test.h"\nint kp_test_group_%s(void);\nconst kp_test_group kp_test_groups[] = {{"%s", kp_test_group_%s}, {0, 0}};\n' \
    "$group" "$group" "$group" > $out/registry.c
PKGS="yaml-0.1 libpng libcurl openblas jansson libxxhash zlib libarchive libcrypto libmicrohttpd"
cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O1 -g -fsanitize=address,undefined \
    -DKP_VERSION='"test"' -Itests $(pkg-config --cflags $PKGS) \
    tests/harness.c $out/registry.c "$@" -o $out/run \
    $(pkg-config --libs $PKGS) -lcsv -lm -lpthread -lcmocka
KPIPE_ROOT=$(pwd) $out/run

#!/bin/sh
# `paycenter` for operators: the same program, user, directory and settings as the systemd units.
# Install as /usr/local/bin/paycenter (docs/deploy.md), then e.g. `sudo paycenter config check`.
set -eu

PAYCENTER_BIN=${PAYCENTER_BIN:-/opt/paycenter/venv/bin/paycenter}
PAYCENTER_ENV_FILE=${PAYCENTER_ENV_FILE:-/etc/paycenter/paycenter.env}
PAYCENTER_USER=${PAYCENTER_USER:-paycenter}
PAYCENTER_HOME=${PAYCENTER_HOME:-/var/lib/paycenter}

if [ "$(id -u)" -ne 0 ]; then
    echo "paycenter: run it as root (sudo paycenter ...); it switches to the $PAYCENTER_USER user" >&2
    exit 2
fi
if [ ! -r "$PAYCENTER_ENV_FILE" ]; then
    echo "paycenter: $PAYCENTER_ENV_FILE is missing (see deploy/paycenter.env.example)" >&2
    exit 2
fi

# A clean environment, as systemd gives the units, plus the env file's KEY=value lines (shell
# syntax here, systemd's there: the same for values without $, backquotes or backslashes).
# SUDO_USER: who called, for the audit log (the command runs as $PAYCENTER_USER, whoever calls).
# shellcheck disable=SC2016 # the inner script expands its own arguments
exec runuser -u "$PAYCENTER_USER" -- env -i PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \
    HOME="$PAYCENTER_HOME" TERM="${TERM:-dumb}" SUDO_USER="${SUDO_USER:-$(id -un)}" \
    /bin/sh -c '
        cd "$1" || exit 1
        set -a
        . "$2"
        set +a
        paycenter_bin=$3
        shift 3
        exec "$paycenter_bin" "$@"
    ' paycenter "$PAYCENTER_HOME" "$PAYCENTER_ENV_FILE" "$PAYCENTER_BIN" "$@"

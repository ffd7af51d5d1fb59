#!/bin/sh
# Entrypoint of the deepfake-detector image: make sure the model files are in the models folder, then run
# the given command (the image's default: the web page, `deepfake-detect serve --host 0.0.0.0 --port 8501`).
#
# Environment:
#   DEEPFAKE_MODELS_DIR        the models folder (the image sets /models, a volume)
#   DEEPFAKE_REQUIRED_WEIGHTS  registry names (`deepfake-detect weights list`) that must be there, separated
#                              by spaces; default "video audio face-net face-weights"; empty: check nothing
#   DEEPFAKE_PULL_WEIGHTS      1 (default): download missing or corrupt files with `deepfake-detect weights
#                              pull` (sha256-checked); 0: never download (air-gapped hosts that mount the files)
#   DEEPFAKE_WEIGHTS_MIRROR    fetch each file from <mirror>/<file name> instead of its origin
#
# Exit codes before the command runs: 78 files missing or corrupt while downloading is off (a setting to fix,
# not a crash to retry); 64 a bad DEEPFAKE_PULL_WEIGHTS value, or no command; otherwise the code of the
# `deepfake-detect weights` command that failed (3: a download failed; 2: an unknown name).
set -eu

EX_USAGE=64
EX_CONFIG=78
EXIT_MODELS=3  # deepfake-detect's code for model files missing, corrupt or not downloadable

say() { printf 'deepfake-detector: %s\n' "$*" >&2; }

if [ $# -eq 0 ]; then
    say "no command given (the image's default is: deepfake-detect serve --host 0.0.0.0 --port 8501)"
    exit "$EX_USAGE"
fi

models_dir=${DEEPFAKE_MODELS_DIR:-/models}
required=${DEEPFAKE_REQUIRED_WEIGHTS-video audio face-net face-weights}
# An empty mirror (compose passes DEEPFAKE_WEIGHTS_MIRROR= when it is not set) means none.
if [ -z "${DEEPFAKE_WEIGHTS_MIRROR:-}" ]; then unset DEEPFAKE_WEIGHTS_MIRROR; fi
case ${DEEPFAKE_PULL_WEIGHTS:-1} in
    1 | true | yes | on) pull=1 ;;
    0 | false | no | off) pull=0 ;;
    *)
        say "DEEPFAKE_PULL_WEIGHTS must be 1 or 0 (true/false, yes/no, on/off); got '$DEEPFAKE_PULL_WEIGHTS'"
        exit "$EX_USAGE"
        ;;
esac

# The checks report on stderr: stdout belongs to the command (e.g. `deepfake-detect analyze --json`).
verify() {
    # shellcheck disable=SC2086  # $required is a list of names: split on spaces on purpose
    deepfake-detect weights verify $required --models-dir "$models_dir" >&2
}

if [ -n "$required" ]; then
    status=0
    verify || status=$?
    if [ "$status" -ne 0 ] && [ "$status" -ne "$EXIT_MODELS" ]; then
        say "could not check the model files (exit $status; the reason is above)." \
            "DEEPFAKE_REQUIRED_WEIGHTS='$required'"
        exit "$status"
    fi
    if [ "$status" -eq "$EXIT_MODELS" ]; then
        if [ "$pull" = 0 ]; then
            say "model files missing or corrupt in $models_dir (listed above), and downloading is off" \
                "(DEEPFAKE_PULL_WEIGHTS=0)."
            say "Mount a folder that holds them at $models_dir, e.g.  docker run -v /srv/deepfake-models:$models_dir:ro ..."
            say "(on a connected machine:  deepfake-detect weights pull $required --models-dir /srv/deepfake-models),"
            say "or allow the download: DEEPFAKE_PULL_WEIGHTS=1, with DEEPFAKE_WEIGHTS_MIRROR=URL for a local mirror."
            exit "$EX_CONFIG"
        fi
        say "fetching the missing model files into $models_dir (a first start downloads up to about 471 MB: deepfake-detect weights list gives each size)"
        # shellcheck disable=SC2086
        deepfake-detect weights pull $required --models-dir "$models_dir" >&2 || {
            status=$?
            say "could not fetch the model files (exit $status; the reason is above). Use a mirror" \
                "(DEEPFAKE_WEIGHTS_MIRROR=URL), or mount a folder that holds them at $models_dir with DEEPFAKE_PULL_WEIGHTS=0."
            exit "$status"
        }
        # pull exits 0 only when every requested file is in place with its pinned sha256.
    fi
fi

exec "$@"

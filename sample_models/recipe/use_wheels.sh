# Sourced by train_all.sh and sweep_collapsed.sh (needs REPO and PY set).
#
# If gpu-run/wheels/ holds a transformers wheel (the version the parity fixtures were made with),
# install it into /tmp/moescope-site once and put that on PYTHONPATH. An flock serialises scripts
# started side by side, and a stamp with the wheels' names skips reinstalling (a reinstall would
# replace files under trainings that are already importing from there).
shopt -s nullglob
wheels=("$REPO"/gpu-run/wheels/*.whl)
if (( ${#wheels[@]} )); then
    stamp="$(basename -a "${wheels[@]}" | sort | tr '\n' ' ')"
    (
        if command -v flock >/dev/null; then flock 9; fi
        if [[ "$(cat /tmp/moescope-site/.moescope-wheels 2>/dev/null)" != "$stamp" ]]; then
            "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/moescope-site "${wheels[@]}"
            echo "$stamp" > /tmp/moescope-site/.moescope-wheels
        fi
    ) 9> /tmp/moescope-site.lock
    if PYTHONPATH=/tmp/moescope-site "$PY" -c "import transformers" 2>/dev/null; then
        export PYTHONPATH=/tmp/moescope-site${PYTHONPATH:+:$PYTHONPATH}
    else
        echo "warning: the carried wheels do not import here; using the installed transformers" >&2
    fi
fi
shopt -u nullglob

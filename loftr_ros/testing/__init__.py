"""Driving the matcher node from outside, for the demo (`make demo`), the node benchmark and the
node tests: a client node that publishes images and collects what the matcher node publishes,
the node in another process, and bag images as rclpy messages. Not used by the node itself."""

"""Publish messages from a process of their own: python publish_messages.py FILE.

FILE is a pickle of [(topic, 'package/msg/Type', serialized message), ...]. Each topic gets a
reliable publisher; once every topic has a subscriber the messages are published in order,
0.3 s apart, and the process exits 1 s later: a publisher apart from the test process and
from the node, as a camera driver is.
"""
import importlib
import pickle
import sys
import time

import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message


def message_type(name: str):
    package, _, kind = name.split('/')
    return getattr(importlib.import_module(f'{package}.msg'), kind)


def main(path: str) -> int:
    with open(path, 'rb') as handle:
        messages = pickle.load(handle)
    rclpy.init()
    node = rclpy.create_node('test_message_publisher')
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
    publishers = {}
    for topic, type_name, _ in messages:
        if topic not in publishers:
            publishers[topic] = node.create_publisher(message_type(type_name), topic, qos)
    deadline = time.monotonic() + 30
    while any(p.get_subscription_count() == 0 for p in publishers.values()):
        if time.monotonic() > deadline:
            print('no subscriber', file=sys.stderr)
            return 1
        time.sleep(0.05)
    time.sleep(0.5)
    for topic, type_name, data in messages:
        publishers[topic].publish(deserialize_message(data, message_type(type_name)))
        time.sleep(0.3)
    time.sleep(1.0)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1]))

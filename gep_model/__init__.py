"""GEP networks, event representations, losses, metrics, deployable weights and runtimes.

ROS-free by design: nothing here imports rclpy or gep_ros.
"""

"""Build script for colcon (ament_python) and pip (`pip install -e .`)."""

from glob import glob
import os

from setuptools import Extension, find_packages, setup

PACKAGE = 'gep_ros'

# The compiled decode kernels: plain C against Python's buffer protocol (no numpy headers, so
# one build serves numpy 1.x and 2.x), built by every install path (pip, pip -e, colcon).
# gep_ros.wire refuses to import without them (gep_ros/wire/kernels.py).
# gep_model.events has its own (the polarity image's passes, gep_model/events/kernels.py).
C_FLAGS = ['-O3', '-std=c99', '-ffp-contract=off'] if os.name == 'posix' else []
KERNELS = [Extension('gep_ros.wire._kernels', sources=['gep_ros/wire/_kernels.c'],
                     extra_compile_args=C_FLAGS),
           Extension('gep_model.events._kernels', sources=['gep_model/events/_kernels.c'],
                     extra_compile_args=C_FLAGS)]

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(include=['gep_ros', 'gep_ros.*', 'gep_model', 'gep_model.*',
                                    'training', 'training.*']),
    ext_modules=KERNELS,
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        (os.path.join('share', PACKAGE), ['package.xml']),
        (os.path.join('share', PACKAGE, 'launch'), glob('launch/*.launch.py')),
        (os.path.join('share', PACKAGE, 'config'), glob('config/*.yaml')),
    ],
    # Python dependencies are pinned in requirements.txt (pip) and declared in package.xml
    # (rosdep); setuptools is the only thing colcon needs from here.
    install_requires=['setuptools'],
    zip_safe=False,  # an extension module is not imported from a zip
    maintainer='gep_ros developers',
    maintainer_email='dev@gep-ros.invalid',
    description='Onboard event-camera perception with GEP (Generative Event Pretraining).',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'gep = gep_ros.cli.main:main',
            'perception_node = gep_ros.perception_node:main',
        ],
    },
)

class NotInitializedException(Exception):

    def __init__(self, *args):
        Exception.__init__(self, 'rclpy.init() has not been called', *args)


class ParameterException(Exception):

    def __init__(self, error_msg, parameters, *args):
        Exception.__init__(self, f'{error_msg}: {parameters}')


class ParameterNotDeclaredException(ParameterException):

    def __init__(self, parameters, *args):
        Exception.__init__(self, 'Invalid access to undeclared parameter(s)', parameters, *args)


class ParameterAlreadyDeclaredException(ParameterException):

    def __init__(self, parameters, *args):
        Exception.__init__(self, 'Parameter(s) already declared', parameters, *args)


class InvalidParameterTypeException(ParameterException):

    def __init__(self, desired_parameter, expected_type, *args):
        from rclpy.parameter import Parameter
        Exception.__init__(
            self,
            f"Trying to set parameter '{desired_parameter.name}' to '{desired_parameter.value}'"
            f" of type '{Parameter.Type.from_parameter_value(desired_parameter.value).name}'"
            f", expecting type '{expected_type}'", *args)
        self._actual_type = desired_parameter.type_
        self._param_name = desired_parameter.name

"""Method specs for the benchmarks: "name" or "name:key=value,key=value".

    gradient_regularization:penalty=finite_difference,lam=1
"""

import inspect

import keras_advreg as kar


def parse(spec):
    """Returns (method name, keyword arguments) of a spec string."""
    name, _, arguments = spec.partition(":")
    kwargs = {}
    for item in filter(None, arguments.split(",")):
        key, _, value = item.partition("=")
        try:
            kwargs[key] = float(value) if "." in value or "e" in value else int(value)
        except ValueError:
            kwargs[key] = value
    return name, kwargs


def objective(spec, epsilon=None):
    """The objective of `spec`, with `epsilon` where the method takes one."""
    name, kwargs = parse(spec)
    method = kar.methods.METHODS[name]
    if epsilon is not None and "epsilon" in inspect.signature(method).parameters:
        kwargs.setdefault("epsilon", epsilon)
    return method(**kwargs)

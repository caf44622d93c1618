"""bcpareto: the accuracy/size trade-off of small white-blood-cell classifiers."""

__version__ = "0.1.0"

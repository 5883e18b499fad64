"""objectcentric: the library behind the book of structured generative models.

Each chapter of the book grows this package by one piece; every public class
names the chapter that explains it.
"""

__version__ = "0.1.0"

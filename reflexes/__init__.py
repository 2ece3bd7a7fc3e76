"""The reflex language and engine: YAML rules → typed model → compiled plan → evaluation.

Pure: no I/O and no clock. `load_rules` reads files only because that is the language's input; the engine
itself (`Engine`) is driven entirely by the events and watermarks its host gives it.
"""

from reflexes.engine import Engine, Output
from reflexes.errors import RuleError, RuleSetError
from reflexes.loader import load_rules, load_rules_text
from reflexes.model import Reflex, RuleSet
from reflexes.store import MemoryStore, Store

__all__ = [
    "Engine",
    "MemoryStore",
    "Output",
    "Reflex",
    "RuleError",
    "RuleSet",
    "RuleSetError",
    "Store",
    "load_rules",
    "load_rules_text",
]

"""``comfy.ldm``: the network building blocks packs import (``comfy.ldm.modules.*``, ``comfy.ldm.util``).

The classes are the ones our models are built from (so ``isinstance`` checks on a loaded
model's modules work); their constructors take our arguments, not upstream's. Families
this implementation does not run (``comfy.ldm.flux``, ``.wan``, ``.lightricks``, ...) are not
provided.
"""

"""ComfyMathExpression (upstream comfy_extras/nodes_math.py): a formula over the node's growing
inputs ``a``, ``b``, ``c``, ... (and ``values``, the list of them), returned as FLOAT, INT and
BOOL.

The formula is never handed to Python's eval: ``evaluate`` walks its syntax tree and allows only
numbers, the input names, arithmetic / bitwise / comparison / boolean operators, ``x if c else y``,
list literals and indexing, and calls of the functions in ``FUNCTIONS``. Attribute access,
strings, lambdas, comprehensions and every other construct are refused, and integer results are
bounded so a short formula cannot exhaust memory (``9**9**9``, ``1 << 10**9``).
"""
from __future__ import annotations

import ast
import math
import operator
import string

from comfyui.nodes.io import io

MAX_EXPRESSION_LENGTH = 4096
MAX_EXPONENT = 4000        # upstream's cap for pow()
MAX_INT_BITS = 1 << 16     # bigger integers are refused (an exponent or a shift could ask for gigabytes)


def _sum(*args):
    """``sum(values)`` and ``sum(a, b, c)`` both work."""
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        return sum(args[0])
    return sum(args)


def _power(base, exponent):
    if abs(exponent) > MAX_EXPONENT:
        raise ValueError(f"Exponent {exponent} exceeds the maximum allowed ({MAX_EXPONENT})")
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 \
            and base.bit_length() * exponent > MAX_INT_BITS:
        raise ValueError(f"Power too large (more than {MAX_INT_BITS} bits)")
    return base ** exponent


def _lshift(value, bits):
    if bits > MAX_INT_BITS:
        raise ValueError(f"Shift by {bits} bits is too large")
    return value << bits


FUNCTIONS = {
    "sum": _sum, "min": min, "max": max, "abs": abs, "round": round, "pow": _power,
    "sqrt": math.sqrt, "ceil": math.ceil, "floor": math.floor,
    "log": math.log, "log2": math.log2, "log10": math.log10,
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "int": int, "float": float,
}
BINARY = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: _power, ast.LShift: _lshift,
    ast.RShift: operator.rshift, ast.BitAnd: operator.and_, ast.BitOr: operator.or_, ast.BitXor: operator.xor,
}
UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg, ast.Not: operator.not_, ast.Invert: operator.invert}
COMPARE = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}


def _number(value):
    # operators on lists would repeat or concatenate them: `[a] * 10**9`
    if not isinstance(value, (int, float)):
        raise ValueError(f"Operators work on numbers, not {type(value).__name__}")
    return value


def _checked(value):
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ValueError("Integer result is too large")
    return value


class _Evaluator:
    def __init__(self, names: dict):
        self.names = names

    def eval(self, node: ast.AST):
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            raise ValueError(f"'{type(node).__name__}' is not allowed in a math expression")
        return method(node)

    def _Expression(self, node):
        return self.eval(node.body)

    def _Constant(self, node):
        if isinstance(node.value, (bool, int, float)):
            return node.value
        raise ValueError(f"Only numbers are allowed in a math expression, not {node.value!r}")

    def _Name(self, node):
        if node.id in self.names:
            return self.names[node.id]
        if node.id in FUNCTIONS:
            raise ValueError(f"'{node.id}' is a function: call it, e.g. {node.id}(a)")
        raise ValueError(f"Unknown name '{node.id}' (connected inputs: {', '.join(sorted(self.names)) or 'none'})")

    def _BinOp(self, node):
        op = BINARY.get(type(node.op))
        if op is None:
            raise ValueError(f"Operator '{type(node.op).__name__}' is not allowed")
        return _checked(op(_number(self.eval(node.left)), _number(self.eval(node.right))))

    def _UnaryOp(self, node):
        return UNARY[type(node.op)](_number(self.eval(node.operand)))

    def _BoolOp(self, node):
        # short-circuit like Python: `b > 0 and a / b` never divides by zero
        value = None
        for operand in node.values:
            value = self.eval(operand)
            if isinstance(node.op, ast.And) and not value or isinstance(node.op, ast.Or) and value:
                return value
        return value

    def _Compare(self, node):
        left = self.eval(node.left)
        for op, right_node in zip(node.ops, node.comparators):
            compare = COMPARE.get(type(op))
            if compare is None:
                raise ValueError(f"Comparison '{type(op).__name__}' is not allowed")
            right = self.eval(right_node)
            if not compare(left, right):
                return False
            left = right
        return True

    def _IfExp(self, node):
        return self.eval(node.body) if self.eval(node.test) else self.eval(node.orelse)

    def _List(self, node):
        return [self.eval(e) for e in node.elts]

    _Tuple = _List

    def _Subscript(self, node):
        container, index = self.eval(node.value), self.eval(node.slice)
        if not isinstance(container, list) or isinstance(index, bool) or not isinstance(index, int):
            raise ValueError("Only a list can be indexed, with an integer")
        return container[index]

    def _Call(self, node):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            raise ValueError(f"Unknown function '{name}' (known: {', '.join(sorted(FUNCTIONS))})")
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise ValueError(f"'{node.func.id}' takes plain positional arguments only")
        return _checked(FUNCTIONS[node.func.id](*[self.eval(a) for a in node.args]))


def evaluate(expression: str, names: dict):
    """The value of ``expression`` with ``names`` bound (see the module docstring)."""
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise ValueError(f"Expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as e:
        raise ValueError(f"Invalid math expression {expression!r}: {e.msg}") from None
    except RecursionError:
        raise ValueError("Math expression is too deeply nested") from None
    try:
        return _Evaluator(names).eval(tree)
    except (ArithmeticError, TypeError) as e:   # 1/0, log(-1), min() of nothing ...
        raise ValueError(f"Math expression {expression!r} failed: {e}") from None
    except RecursionError:
        raise ValueError("Math expression is too deeply nested") from None


class MathExpression(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        value = io.MultiType.Input("value", [io.Float, io.Int, io.Boolean], optional=True)
        return io.Schema(
            node_id="ComfyMathExpression",
            display_name="Math Expression",
            category="utilities",
            search_aliases=["math", "expression", "formula", "calculate", "calculator", "eval"],
            inputs=[
                io.String.Input("expression", default="a + b", multiline=True),
                io.Autogrow.Input("values", template=io.Autogrow.TemplateNames(
                    input=value, names=list(string.ascii_lowercase), min=1)),
            ],
            outputs=[io.Float.Output(display_name="FLOAT"), io.Int.Output(display_name="INT"),
                     io.Boolean.Output(display_name="BOOL")],
        )

    @classmethod
    def execute(cls, expression: str, values: dict) -> io.NodeOutput:
        if not expression.strip():
            raise ValueError("Expression cannot be empty.")
        names = dict(values)
        names["values"] = list(values.values())
        result = evaluate(expression, names)
        if not isinstance(result, (int, float)):   # bool is an int
            raise ValueError(f"Math Expression {expression!r} must give a number, "
                             f"got {type(result).__name__}: {result!r}")
        as_float = float(result)
        if not math.isfinite(as_float):
            raise ValueError(f"Math Expression {expression!r} gave a non-finite result: {result}")
        return io.NodeOutput(as_float, int(result), bool(result))


NODE_CLASS_MAPPINGS = {"ComfyMathExpression": MathExpression}

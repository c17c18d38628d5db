"""Wrong uses of the fluent API that a user's checker must reject.

Never imported nor run: ``test_wrong_uses.py`` runs mypy --strict and basedpyright on this
file and checks that each line whose comment starts with "wrong" has an error, and no other line has one.
"""

from __future__ import annotations

from olympipe import Pipeline


def needs_str(s: str) -> str:
    return s.upper()


def needs_two(a: int, b: int) -> int:
    return a + b


class Model:
    def predict(self, text: str) -> float:
        return float(len(text))



ints = Pipeline(range(10))
ints.task(needs_str)  # wrong: a stage of str on items of int
ints.task(needs_two)  # wrong: a stage takes one item
ints.task(str, count="fast")  # wrong: a count is an int or "auto"
ints.task(str, on_full="drop")  # wrong: not a flow policy
ints.class_task(Model, Model.predict)  # wrong: the method takes str, the items are int
ints.batch("4")  # wrong: a batch size is an int
ints.explode(needs_str)  # wrong: explode's function takes the items
ints.task(str).task(abs)  # wrong: abs of a str
words: list[int] = ints.task(str).wait_for_result()  # wrong: the results are str
Pipeline(range(3), workers="2")  # wrong: a budget is an int

"""Worker: composition, constant arguments, equality, errors as values."""

from __future__ import annotations

import pickle

import pytest

from papy.pipeline import Batch, Worker, WorkerError


def power(inbox, n=2):
    return inbox[0] ** n


def mul2(inbox):
    return inbox[0] * 2


def power2(inbox):
    return power(inbox, 2)


def add(inbox, a, b=0):
    return inbox[0] + a + b


def boom(inbox):
    raise ValueError(f"boom {inbox[0]}")


class Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("no pickling")


def raise_unpicklable(inbox):
    raise Unpicklable("x")


def tag(inbox):
    return str(inbox[0]) + "!"


def seen(inbox):
    return inbox


def test_composition_order_case_17():
    assert Worker((power2, mul2))([3]) == 18
    assert Worker((mul2, power2))([3]) == 36
    assert Worker(power, (), {"n": 3})([2]) == 8
    assert Worker(power, (3,))([2]) == 8


def test_every_later_function_of_a_composition_gets_a_one_tuple_inbox():
    # as in the original: a function reads inbox[0] whatever its position
    assert Worker((tag, tag))([12]) == "12!!"
    assert Worker((tag, tag, tag))(["x"]) == "x!!!"
    assert Worker((seen, seen))([1, 2]) == ([1, 2],)
    assert Worker((seen, seen, seen))(["a"]) == ((["a"],),)
    assert Worker([Worker(tag), Worker((tag, tag))])([0]) == "0!!!"


def test_per_function_arguments_and_workers_of_workers():
    w = Worker((power, power), ((), ()), ({"n": 2}, {"n": 3}))
    assert w([2]) == 64
    assert Worker(add, (1,), {"b": 10})([1]) == 12
    ww = Worker([Worker(power2), Worker(mul2)])
    assert ww([3]) == 18
    assert ww.task == (power2, mul2)
    assert ww.__name__ == "power2>mul2"
    assert Worker(ww) == ww and Worker(ww) is not ww


def test_argument_lengths_are_checked_including_kwargs():
    with pytest.raises(ValueError, match="argument tuples"):
        Worker((power, mul2), ((),))
    with pytest.raises(ValueError, match="kwargs dicts"):
        Worker((power, mul2), ((), ()), ({},))
    with pytest.raises(TypeError):
        Worker(power, 3)
    with pytest.raises(TypeError):
        Worker(power, (), {1: 2})


@pytest.mark.parametrize("bad", [1, [1], "abc", [], [power, 1]])
def test_bad_functions_are_refused(bad):
    with pytest.raises(TypeError):
        Worker(bad)


def test_equality_is_functional_and_workers_are_unhashable():
    assert Worker(power) == Worker(power)
    assert Worker(power, (3,)) != Worker(power, (2,))
    assert Worker((power, mul2)) != Worker((mul2, power))
    assert Worker(power, (), {"n": 2}) != Worker(power, (), {"n": 3})
    with pytest.raises(TypeError):
        hash(Worker(power))


def test_an_exception_is_returned_as_a_worker_error():
    w = Worker((mul2, power2))
    err = w(["a"])  # 'aa' ** 2 fails in power2
    assert isinstance(err, WorkerError)
    assert isinstance(err.exception, TypeError)
    assert err.function == "power2"  # the composed function whose call raised
    assert "Traceback" in err.traceback and "power" in err.traceback
    assert err.piper is None and err.index is None


def test_error_function_name_is_the_composed_function_that_raised():
    def boom_value(inbox):
        raise KeyError(inbox[0])

    err = Worker((mul2, boom_value))([1])
    assert err.function == "boom_value"
    assert err.exception.args == (2,)


def test_an_error_in_the_inbox_is_returned_as_is_without_a_call():
    calls = []

    def record(inbox):
        calls.append(inbox)
        return 1

    err = Worker(boom)([1])
    assert Worker(record)([2, err]) is err
    assert Worker(record)([Batch([[1], [err]])]) is err
    assert calls == []


def test_worker_and_error_pickle_round_trip():
    w = Worker((power, mul2), ((3,), ()))
    w2 = pickle.loads(pickle.dumps(w))
    assert w2 == w and w2([2]) == 16 and w2.__name__ == w.__name__
    err = Worker(boom)([5])
    err.piper, err.index = "p", 7
    err2 = pickle.loads(pickle.dumps(err))
    assert (err2.piper, err2.index, err2.function, err2.traceback) == (
        "p",
        7,
        "boom",
        err.traceback,
    )
    assert type(err2.exception) is ValueError
    err3 = pickle.loads(pickle.dumps(Worker(raise_unpicklable)([1])))
    assert "Unpicklable" in str(err3.exception)


def test_repr_and_name():
    w = Worker((power, mul2), name="pm")
    assert w.name == "pm" and w.__name__ == "power>mul2" and "pm" in repr(w)


def test_papy_offers_the_pipeline_names_without_importing_them_up_front():
    import subprocess
    import sys

    code = (
        "import sys, papy; assert 'papy.pipeline' not in sys.modules; "
        "import papy.pipeline as pp; "
        "assert all(getattr(papy, n) is getattr(pp, n) for n in "
        "('Worker', 'Piper', 'Dagger', 'Plumber', 'WorkerError', 'PiperError', 'DaggerError', 'PlumberError')); "
        "assert set(pp.__all__) - {'Batch'} <= set(papy.__all__)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

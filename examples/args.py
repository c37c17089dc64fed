"""Constant arguments: each call is func(item, *args, **kwargs)."""

from papy import IMap


def show(item, *args, **kwargs):
    return item, args, kwargs


if __name__ == "__main__":
    data = [f"element_{i}" for i in range(3)]
    with IMap(worker_type="process", worker_num=2) as imap:
        results = imap.add_task(
            show, data, args=("arg_0", "arg_1"), kwargs={"kwarg_0": "val_0", "kwarg_1": "val_1"}
        )
        imap.start()
        for item, args, kwargs in results:
            print(item, args, sorted(kwargs.items()))

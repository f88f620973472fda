"""The optimizer and scheduler of a config, checked before any data are read.

``optimizer.name`` and ``optimizer.scheduler.name`` name classes of ``torch.optim`` and
``torch.optim.lr_scheduler``; their ``options`` are keyword arguments. The engine builds them
only once the model exists (:func:`ptyrad_core.engine.builder.make_optimizer`), after the data are
loaded and preprocessed. :func:`check_optimizer` finds every mistake the engine would find, at
config validation (``ptyrad-core validate`` and ``run``, through
:func:`ptyrad_core.kernel.config.validate_components` with ``checks=(check_config,)``):

- the names: a class of the right family (closest names suggested for a typo);
- the options: bound to the constructor's signature (unknown keywords, a keyword the engine sets
  itself), then the optimizer is built on a dummy parameter and the scheduler on that
  optimizer, so that torch's own checks of the values (``betas`` out of range, a negative
  ``lr``, a missing ``step_size``) run too;
- optimizers the model cannot use (:data:`UNUSABLE`): ``SparseAdam`` needs sparse gradients, and
  every parameter of the model is a dense tensor, whose gradients are dense; ``Muon`` takes 2-D
  matrices only.
"""

from __future__ import annotations

import difflib
import inspect
import warnings

#: optimizers that cannot optimize the model, with the reason
UNUSABLE = {
    "SparseAdam": (
        "SparseAdam needs sparse gradients, which the model never produces (its parameters are dense "
        "tensors); use Adam, AdamW or another dense optimizer"
    ),
    "Muon": (
        "Muon updates 2-D weight matrices only, and the object (omode, Nz, NY, NX) and the probe "
        "are not 2-D; use Adam, AdamW or another optimizer for tensors of any shape"
    ),
}

#: keywords the engine passes itself (parameter groups; their learning rates come from `update`)
ENGINE_KEYWORDS = {
    "params": "the engine passes the parameters (one group per parameter of `update` with lr > 0)"
}


def _classes(module, base) -> dict[str, type]:
    return {
        n: c
        for n, c in vars(module).items()
        if isinstance(c, type) and issubclass(c, base) and c is not base and not n.startswith("_")
    }


def _unknown(kind: str, name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    usable = sorted(c for c in choices if c not in UNUSABLE)
    return f"{name!r} is not a {kind}{hint} choose one of: {', '.join(usable)}"


def _bind(cls, options: dict) -> str | None:
    """A message when ``options`` do not fit ``cls.__init__`` (after its first argument), else None."""
    try:
        sig = inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        return None
    params = list(sig.parameters.values())[2:]  # self, params / optimizer
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    names = [
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    for key in options:
        if key not in names and not takes_any:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            return f"unknown option {key!r}{hint} Options of {cls.__name__}: {', '.join(names)}"
    missing = [
        p.name
        for p in params
        if p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        and p.name not in options
    ]
    if missing:
        return f"{cls.__name__} needs the option(s) {', '.join(missing)}"
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def check_config(config) -> list[tuple[tuple, str]]:
    """:func:`check_optimizer` of a whole config, as :func:`ptyrad_core.kernel.config.validate_components`
    takes it (``checks=(check_config,)``): the kernel validates the components and reports these
    problems with theirs, without importing this layer."""
    return check_optimizer(config.optimizer)


def check_optimizer(section) -> list[tuple[tuple, str]]:
    """Problems of the ``optimizer`` section: ``[(YAML path, message), ...]`` (empty: fine).

    :param section: the config's :class:`~ptyrad_core.kernel.config.OptimizerSection`.
    """
    import torch

    problems: list[tuple[tuple, str]] = []
    optimizers = _classes(torch.optim, torch.optim.Optimizer)
    cls = optimizers.get(section.name)
    optimizer = None
    if cls is None:
        problems.append(
            (("optimizer", "name"), _unknown("torch.optim optimizer", section.name, list(optimizers)))
        )
    elif section.name in UNUSABLE:
        problems.append((("optimizer", "name"), UNUSABLE[section.name]))
        cls = None
    if cls is not None:
        options = dict(section.options)
        clash = [k for k in options if k in ENGINE_KEYWORDS]
        message = (
            f"option {clash[0]!r} cannot be set: {ENGINE_KEYWORDS[clash[0]]}"
            if clash
            else _bind(cls, options)
        )
        if message is None:
            dummy = torch.nn.Parameter(torch.zeros(2))
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    optimizer = cls([{"params": [dummy], "lr": 1e-3}], **options)
            except Exception as exc:
                implementation = {"fused", "foreach", "capturable", "differentiable"} & set(options)
                if (
                    implementation
                ):  # may hold only on the run's device (a fused kernel for CUDA): left to the run
                    try:
                        optimizer = cls(
                            [{"params": [dummy], "lr": 1e-3}],
                            **{k: v for k, v in options.items() if k not in implementation},
                        )
                    except Exception as exc2:
                        message = (
                            f"torch.optim.{section.name} rejected the options {options}: {_first_line(exc2)}"
                        )
                else:
                    message = f"torch.optim.{section.name} rejected the options {options}: {_first_line(exc)}"
        if message is not None:
            problems.append((("optimizer", "options"), message))
    spec = section.scheduler
    if spec is None:
        return problems
    schedulers = _classes(torch.optim.lr_scheduler, torch.optim.lr_scheduler.LRScheduler)
    schedulers.pop("ReduceLROnPlateau", None)
    schedulers["ReduceLROnPlateau"] = torch.optim.lr_scheduler.ReduceLROnPlateau
    scls = schedulers.get(spec.name)
    if scls is None:
        problems.append(
            (
                ("optimizer", "scheduler", "name"),
                _unknown("torch.optim.lr_scheduler class", spec.name, list(schedulers)),
            )
        )
        return problems
    message = _bind(scls, dict(spec.options))
    if message is None:
        if optimizer is None:  # the optimizer itself is wrong: try the scheduler on a plain SGD
            optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=1e-3)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scls(optimizer, **spec.options)
        except Exception as exc:
            message = (
                f"torch.optim.lr_scheduler.{spec.name} rejected the options {spec.options}: "
                f"{_first_line(exc)}"
            )
    if message is not None:
        problems.append((("optimizer", "scheduler", "options"), message))
    return problems

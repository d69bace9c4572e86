"""Reaching the Hugging Face Hub, and pickles refused for safety: the checks that turn a model, dataset or file the
run cannot have into one line that says why and what to do.

- Before the first Hub access for a name (`check_hub_name`): a name that looks like a path but is none is "no such
  folder", not a Hub id; unless `HF_HUB_OFFLINE` is set, one HTTP request to the configured endpoint
  (`huggingface_hub.constants.ENDPOINT`, `HF_ENDPOINT`), a few seconds at most and made once per process, says
  whether the Hub answers. Without it, `huggingface_hub` retries every file for minutes and the loader then fails
  with an error about something else (`VitsTokenizer` with a `TypeError` about `NoneType`).
- With `HF_HUB_OFFLINE` set, a Hub id that is not in the Hugging Face cache (`require_cached_when_offline`, or
  `offline_miss` after a loader failed) is named with the ways out, instead of the loader's own error.
- `torch.load(weights_only=True)` refuses a pickle that holds objects other than tensors; torch's message names no
  file and suggests `weights_only=False`, which would run whatever the file holds. `refused_pickle_message` names
  the file and says to re-save it from a trusted source.

A leaf: it imports nothing of the recipe but `recipe.errors`.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import ssl
import threading
import urllib.error
import urllib.request
from typing import Literal

from huggingface_hub import constants
from huggingface_hub.errors import HFValidationError
from huggingface_hub.file_download import repo_folder_name
from huggingface_hub.utils import validate_repo_id

from recipe.errors import InputError, MissingInputError, UnavailableError

logger = logging.getLogger(__name__)

# How long the reachability check waits for the endpoint's answer (name lookup included): the Hub answers a HEAD
# request in well under a second where it is reachable, and a few seconds are all a run without network should cost
CHECK_TIMEOUT_SECONDS = 5.0
# endpoint -> None when it answered, else why not: the check is made once per process and endpoint
_reachability: dict[str, str | None] = {}

HubKind = Literal["model", "dataset"]
# what a local replacement of each kind of Hub repository is, for the messages
_LOCAL_FOLDER = {"model": "a local model folder", "dataset": "a local dataset (folder or file)"}
# how torch.load(weights_only=True) starts the message of a pickle it refuses, and names the object it refused
_WEIGHTS_ONLY_REFUSAL = "Weights only load failed"
_UNSUPPORTED_GLOBAL = re.compile(r"unsupported GLOBAL ([\w.]+)")


class RefusedPickleError(InputError, RuntimeError):
    """A `.pt` / `.bin` file holds pickled objects other than tensors, which `torch.load(weights_only=True)` refuses
    to unpickle: loading them could run code. A `RuntimeError` too, as torch's load errors are."""


# -- names ------------------------------------------------------------------------------------------------------------


def plainly_a_path(name: str) -> bool:
    """`name` starts with `.`, `/` or `~` or ends with a separator: no Hub id does."""
    separators = tuple({os.sep, "/"})
    return name.startswith((".", "~", *separators)) or name.endswith(separators)


def looks_like_path(name: str) -> bool:
    """`name` is meant as a path, not a Hub id (`owner/name`): plainly a path (`plainly_a_path`), more separators
    than a Hub id has, or a first part (before a separator) that is a folder here."""
    if plainly_a_path(name) or name.count("/") + (name.count(os.sep) if os.sep != "/" else 0) > 1:
        return True
    first, separator, _ = name.partition(os.sep)
    return bool(separator and first) and os.path.isdir(first)


def is_hub_id(name: str) -> bool:
    """`name` is spelled as a Hub repository id (`name` or `owner/name`, as `huggingface_hub` validates it)."""
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _missing_path_error(name: str, flag: str, kind: HubKind) -> MissingInputError:
    words = "no such folder or file" if looks_like_path(name) else "no such folder or file, and not a Hub id"
    return MissingInputError(f"{flag} {name!r}: {words}. Give {_LOCAL_FOLDER[kind]} that exists, or a Hub id.")


# -- the Hub's answer ------------------------------------------------------------------------------------------------


def _is_set(variable: str) -> bool:
    return os.environ.get(variable, "").upper() in constants.ENV_VARS_TRUE_VALUES


def hub_offline(kind: HubKind = "model") -> bool:
    """`HF_HUB_OFFLINE` is set (as `huggingface_hub` read it when imported), or `HF_DATASETS_OFFLINE` for a
    dataset: the loaders read the cache only."""
    return constants.is_offline_mode() or (kind == "dataset" and _is_set("HF_DATASETS_OFFLINE"))


def _offline_variable(kind: HubKind) -> str:
    return "HF_DATASETS_OFFLINE" if kind == "dataset" and _is_set("HF_DATASETS_OFFLINE") else "HF_HUB_OFFLINE"


def _probe(endpoint: str, answer: dict) -> None:
    request = urllib.request.Request(endpoint, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=CHECK_TIMEOUT_SECONDS):
            pass
        answer["reason"] = None
    except urllib.error.HTTPError:
        answer["reason"] = None  # an HTTP status is an answer: the Hub is there
    except urllib.error.URLError as error:
        # a certificate the default store refuses (a proxy's own CA) is huggingface_hub's to judge, not a network down
        answer["reason"] = None if isinstance(error.reason, ssl.SSLError) else str(error.reason)
    except (OSError, ValueError) as error:  # a timeout, a reset connection, an endpoint that is not a URL
        answer["reason"] = f"{type(error).__name__}: {error}"


def unreachable_reason(endpoint: str | None = None) -> str | None:
    """Why the Hub endpoint (default `huggingface_hub.constants.ENDPOINT`, which `HF_ENDPOINT` sets) does not
    answer, or `None` when it does; one HEAD request of at most `CHECK_TIMEOUT_SECONDS`, made once per process and
    endpoint.

    The request runs in a thread of its own so that the name lookup, which no socket timeout covers, is bounded too.
    """
    endpoint = endpoint or constants.ENDPOINT
    if endpoint not in _reachability:
        answer: dict = {}
        probe = threading.Thread(target=_probe, args=(endpoint, answer), daemon=True, name="hub-reachability")
        probe.start()
        probe.join(CHECK_TIMEOUT_SECONDS + 1)
        _reachability[endpoint] = answer.get("reason", f"no answer within {CHECK_TIMEOUT_SECONDS:.0f} s")
        if _reachability[endpoint] is not None:
            logger.debug(f"{endpoint}: unreachable ({_reachability[endpoint]})")
    return _reachability[endpoint]


def check_hub_name(name: str, flag: str, kind: HubKind = "model", cache: str | None = None) -> None:
    """Before the first Hub access for `name`, given to `flag`: nothing to do for a path that exists; refuses a
    path-like name that does not exist, and a Hub id while the Hub does not answer (unless `HF_HUB_OFFLINE` is set,
    when the loaders read the cache only). `cache` is the cache the loader reads offline, for the message, when it
    is not the Hub's (`datasets`').

    Raises:
        `MissingInputError`: `name` looks like a path (`looks_like_path`), or is no Hub id, and does not exist.
        `UnavailableError`: the Hub endpoint does not answer; names the flag, the id and the ways out.
    """
    if os.path.exists(name):
        return
    if looks_like_path(name) or not is_hub_id(name):
        raise _missing_path_error(name, flag, kind)
    if hub_offline(kind):
        return
    reason = unreachable_reason()
    if reason is not None:
        raise UnavailableError(
            f"{flag} {name!r}: not a local path, and the Hugging Face Hub ({constants.ENDPOINT}) cannot be reached "
            f"from here ({reason}). Give {_LOCAL_FOLDER[kind]} instead, or set HF_HUB_OFFLINE=1 to read {name} from "
            f"the Hugging Face cache ({_cache_folder(kind, cache)}) if it was downloaded there before."
        )


# -- the cache, offline -----------------------------------------------------------------------------------------------


def _cache_folder(kind: HubKind, datasets_cache: str | None = None) -> str:
    return datasets_cache if kind == "dataset" and datasets_cache else constants.HF_HUB_CACHE


def in_hub_cache(name: str, kind: HubKind = "model") -> bool:
    """The Hugging Face cache (`HF_HUB_CACHE`) holds a snapshot of the repository `name`."""
    snapshots = os.path.join(constants.HF_HUB_CACHE, repo_folder_name(repo_id=name, repo_type=kind), "snapshots")
    return os.path.isdir(snapshots) and bool(os.listdir(snapshots))


def offline_error(
    name: str, flag: str, kind: HubKind = "model", cache: str | None = None, context: str = ""
) -> UnavailableError:
    """The error of a Hub id that is not in the cache while `HF_HUB_OFFLINE` is set; `context` (a caller's words on
    what failed, ending in ": ") goes after the flag and the id."""
    variable = _offline_variable(kind)
    return UnavailableError(
        f"{flag} {name!r}: {context}{variable}=1 is set and {name} is not in the Hugging Face disk cache "
        f"({_cache_folder(kind, cache)}). Give {_LOCAL_FOLDER[kind]} instead, or run once without {variable} where "
        "the Hub is reachable, so that it is downloaded into the cache."
    )


def offline_miss(
    name: str,
    flag: str,
    kind: HubKind = "model",
    cached: bool | None = None,
    cache: str | None = None,
    context: str = "",
) -> UnavailableError | None:
    """After a loader failed on `name`: `offline_error` when the Hub is off (`HF_HUB_OFFLINE`) and `name` is a Hub
    id that is not in the cache, else `None` (the loader's own error is the one to report).

    Args:
        cached (`bool`, *optional*): whether the cache holds `name`, for a cache of the caller's (`datasets`');
            defaults to `in_hub_cache`.
        cache (`str`, *optional*): that cache's folder, for the message.
        context (`str`, *optional*): what failed, for the message (`offline_error`).
    """
    if os.path.exists(name) or not hub_offline(kind) or not is_hub_id(name):
        return None
    if in_hub_cache(name, kind) if cached is None else cached:
        return None
    return offline_error(name, flag, kind, cache, context)


def require_cached_when_offline(name: str, flag: str, kind: HubKind = "model") -> None:
    """With `HF_HUB_OFFLINE` set, refuse a Hub id that is not in the cache before a loader meets it (the
    `VitsTokenizer` loader fails on it with a `TypeError`, not with an error about the cache).

    Raises:
        `UnavailableError` (`offline_error`).
    """
    missing = offline_miss(name, flag, kind)
    if missing is not None:
        raise missing


def check_before_loading(name: str, flag: str, kind: HubKind = "model") -> None:
    """`check_hub_name`, then `require_cached_when_offline`: what to check before a loader reads `name`."""
    check_hub_name(name, flag, kind)
    require_cached_when_offline(name, flag, kind)


# -- pickles ----------------------------------------------------------------------------------------------------------


def is_refused_pickle(error: BaseException) -> bool:
    """`error` is `torch.load(weights_only=True)` refusing to unpickle a file (torch says "Weights only load
    failed")."""
    return isinstance(error, pickle.UnpicklingError) and _WEIGHTS_ONLY_REFUSAL in str(error)


def refused_pickle_reason(error: BaseException) -> str:
    """What to say of a file whose `torch.load(weights_only=True)` failed with `error` (`is_refused_pickle`): which
    object it holds when torch names one, and what to do; never to load it with `weights_only=False`, which would
    run whatever the file holds."""
    found = _UNSUPPORTED_GLOBAL.search(str(error))
    held = f"pickled objects other than tensors ({found.group(1)})" if found else "pickled data other than tensors"
    return (
        f"holds {held}, refused for safety: unpickling it could run any code. Re-save it from a trusted source as "
        "plain tensors (a state dict, or .safetensors), or use a file this recipe wrote"
    )


def refused_pickle_message(path: str, error: BaseException) -> str:
    """`path: refused_pickle_reason(error).`"""
    return f"{path}: {refused_pickle_reason(error)}."


def refused_pickle_error(path: str, error: BaseException) -> RefusedPickleError:
    """`RefusedPickleError` with `refused_pickle_message`."""
    return RefusedPickleError(refused_pickle_message(path, error))

"""SPF, DKIM and DMARC records of the sender's domain, looked up live with dnspython.

Offline (no resolver, a timeout) each record is "unknown", never an error. DNS_RESOLVER ("host" or "host:port")
overrides the system resolver; MAIL_DKIM_SELECTOR names the DKIM selector (DKIM keys live at
<selector>._domainkey.<domain>, so without a selector DKIM cannot be verified). Answers are cached a while.
"""

from __future__ import annotations

import threading
import time
from email.utils import parseaddr

import dns.exception
import dns.resolver
from flask import current_app

CACHE_SECONDS = 600
_cache: dict = {}
_lock = threading.Lock()


def sender_domain(sender: str | None) -> str | None:
    address = parseaddr(sender or "")[1]
    return address.rsplit("@", 1)[1].lower() if "@" in address else None


def _resolver() -> dns.resolver.Resolver:
    setting = str(current_app.config.get("DNS_RESOLVER") or "").strip()
    if setting:
        resolver = dns.resolver.Resolver(configure=False)
        host, _, port = setting.partition(":")
        resolver.nameservers = [host]
        resolver.port = int(port or 53)
    else:
        resolver = dns.resolver.Resolver()
    resolver.lifetime = float(current_app.config.get("DNS_TIMEOUT", 2.0))
    return resolver


def _txt(resolver, name: str) -> list[str] | None:
    """TXT strings at `name`; [] when the name has none; None when the lookup could not be made."""
    try:
        answer = resolver.resolve(name, "TXT")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except (dns.exception.DNSException, OSError):
        return None
    return [b"".join(record.strings).decode("utf-8", "replace") for record in answer]


def check_domain(domain: str, dkim_selector: str | None) -> dict:
    """{"spf", "dkim", "dmarc"}: each {"status": "present" | "missing" | "unknown", "record"?, "detail"?}."""
    key = (domain, dkim_selector, str(current_app.config.get("DNS_RESOLVER") or ""))
    with _lock:
        hit = _cache.get(key)
        if hit and time.monotonic() - hit[0] < CACHE_SECONDS:
            return hit[1]
    resolver = _resolver()

    def find(name: str, prefix: str) -> dict:
        records = _txt(resolver, name)
        if records is None:
            return {"status": "unknown", "detail": f"{name} could not be looked up (offline?)"}
        matching = [r for r in records if r.lower().startswith(prefix)
                    or (prefix == "v=dkim1" and "p=" in r.lower())]  # v=DKIM1 is optional in a key record
        if matching:
            return {"status": "present", "record": matching[0][:300]}
        return {"status": "missing", "detail": f"no {prefix} TXT record at {name}"}

    result = {"spf": find(domain, "v=spf1"), "dmarc": find(f"_dmarc.{domain}", "v=dmarc1")}
    if dkim_selector:
        result["dkim"] = find(f"{dkim_selector}._domainkey.{domain}", "v=dkim1")
    else:
        result["dkim"] = {"status": "unknown", "detail": "set MAIL_DKIM_SELECTOR to verify the DKIM key"}
    if not any(entry["status"] == "unknown" and "offline" in entry.get("detail", "") for entry in result.values()):
        with _lock:  # offline answers are not cached: the next look may succeed
            _cache[key] = (time.monotonic(), result)
    return result


def clear_cache() -> None:
    with _lock:
        _cache.clear()

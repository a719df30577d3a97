from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from gateway import links, nginx_conf
from node.config import ConfigError
from tests.unit.samples import CID, OTHER_CID

PATH = "/media/factory1/cam1/2026-11-21/120000-0000000001.ts"
SECRET = "s3cr3t-S3CR3T_0123456789abcdefghijklmn"
NOW = 1_795_000_000


def test_token_known_answer() -> None:
    # Computed the way nginx does for secure_link_md5 "$secure_link_expires$uri$arg_cid SECRET".
    digest = hashlib.md5(f"1795000300{PATH}{CID} {SECRET}".encode()).digest()
    expected = base64.b64encode(digest).decode().replace("+", "-").replace("/", "_").rstrip("=")
    token = links.sign(PATH, CID, 1795000300, SECRET)
    assert token == expected
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", token)


def test_fixed_vector() -> None:
    assert links.sign("/media/f/d/2026-01-02/a.ts", "bafy", 1, "k") == base64.urlsafe_b64encode(
        hashlib.md5(b"1/media/f/d/2026-01-02/a.tsbafy k").digest()
    ).decode().rstrip("=")


def test_signed_url_round_trip() -> None:
    url = links.signed_url(PATH, CID, secret=SECRET, expires=NOW + 60)
    parts = urlsplit(url)
    assert parts.path == PATH
    query = {k: v[0] for k, v in parse_qs(parts.query, strict_parsing=True).items()}
    assert set(query) == {"cid", "expires", "md5"}
    assert query["cid"] == CID
    assert query["expires"] == str(NOW + 60)
    assert links.verify(PATH, CID, NOW + 60, query["md5"], SECRET, NOW)


def _token(expires: int = NOW + 60) -> str:
    return links.sign(PATH, CID, expires, SECRET)


@pytest.mark.parametrize(
    ("path", "cid", "expires", "token", "secret", "now", "ok"),
    [
        pytest.param(PATH, CID, NOW + 60, _token(), SECRET, NOW, True, id="fresh"),
        pytest.param(PATH, CID, NOW + 60, _token(), SECRET, NOW + 60, True, id="last-second"),
        pytest.param(PATH, CID, NOW + 60, _token(), SECRET, NOW + 61, False, id="expired"),
        pytest.param(PATH.replace("cam1", "cam2"), CID, NOW + 60, _token(), SECRET, NOW, False, id="path"),
        pytest.param(PATH, OTHER_CID, NOW + 60, _token(), SECRET, NOW, False, id="cid"),
        pytest.param(PATH, CID, NOW + 61, _token(), SECRET, NOW, False, id="expires-moved"),
        pytest.param(PATH, CID, NOW + 60, _token(), SECRET + "x", NOW, False, id="wrong-secret"),
        pytest.param(PATH, CID, NOW + 60, _token()[:-1] + "A", SECRET, NOW, False, id="token-changed"),
        pytest.param(PATH, CID, NOW + 60, _token() + "=", SECRET, NOW, False, id="token-padded"),
        pytest.param(PATH, CID, NOW + 60, "", SECRET, NOW, False, id="no-token"),
        pytest.param(PATH, "not-a-cid", NOW + 60, _token(), SECRET, NOW, False, id="bad-cid"),
        pytest.param(PATH + "/", CID, NOW + 60, _token(), SECRET, NOW, False, id="bad-path"),
    ],
)
def test_verify(path: str, cid: str, expires: int, token: str, secret: str, now: int, ok: bool) -> None:
    assert links.verify(path, cid, expires, token, secret, now) is ok


@pytest.mark.parametrize(
    ("path", "message"),
    [
        pytest.param("/media/factory1/cam1/2026-11-21", "must be", id="too-short"),
        pytest.param("/media/factory1/cam1/2026-11-21/a/b.ts", "must be", id="too-deep"),
        pytest.param("/static/factory1/cam1/2026-11-21/x.ts", "must start", id="prefix"),
        pytest.param("media/factory1/cam1/2026-11-21/x.ts", "must start", id="relative"),
        pytest.param("/media/../cam1/2026-11-21/x.ts", "factory", id="dotdot-factory"),
        pytest.param("/media/factory1/../2026-11-21/x.ts", "device", id="dotdot-device"),
        pytest.param("/media/factory1/cam1/2026-11-21/..", "file name", id="dotdot-file"),
        pytest.param("/media/factory1/cam1/../../x.ts", "must be", id="dotdot-escape"),
        pytest.param("/media/factory1/cam1/2026-11-21/%2e%2e%2fx.ts", "file name", id="pct-dotdot"),
        pytest.param("/media/%2e%2e/cam1/2026-11-21/x.ts", "factory", id="pct-factory"),
        pytest.param("/media/factory1/cam1/2026-11-21/x\x00.ts", "file name", id="nul"),
        pytest.param("/media/factory1/cam1/2026-11-21/.hidden.ts", "file name", id="dotfile"),
        pytest.param("/media/factory1/cam1/2026-11-21/x.m3u8", "file name", id="not-ts"),
        pytest.param("/media/factory1/cam1/2026-11-21/day.m3u8", "file name", id="playlist"),
        pytest.param("/media/factory1/cam1/20261121/x.ts", "day", id="day-compact"),
        pytest.param("/media/factory1/cam1/2026-11-31/x.ts", "day", id="day-invalid"),
        pytest.param("/media/factory1/cam1/2026-1-21/x.ts", "day", id="day-short"),
        pytest.param("/media/" + "f" * 65 + "/cam1/2026-11-21/x.ts", "factory", id="long-factory"),
        pytest.param("/media/factory1/" + "d" * 65 + "/2026-11-21/x.ts", "device", id="long-device"),
        pytest.param("/media/factory1/cam1/2026-11-21/" + "x" * 129 + ".ts", "file name", id="long-file"),
        pytest.param("/media/fac tory/cam1/2026-11-21/x.ts", "factory", id="space"),
        pytest.param("/media/factory1/cam1/2026-11-21/x.ts?cid=1", "file name", id="query"),
    ],
)
def test_media_path_refused(path: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        links.parse_media_path(path)
    with pytest.raises(ValueError, match=message):
        links.signed_url(path, CID, secret=SECRET, expires=NOW)
    assert not links.verify(path, CID, NOW, links.sign(path, CID, NOW, SECRET), SECRET, NOW)


def test_media_path_accepted() -> None:
    longest = "/media/" + "f" * 64 + "/" + "d" * 64 + "/2026-11-21/" + "x" * 128 + ".ts"
    assert links.parse_media_path(longest).filename == "x" * 128 + ".ts"
    parsed = links.parse_media_path(PATH)
    assert parsed == links.MediaPath("factory1", "cam1", "2026-11-21", "120000-0000000001.ts")
    assert links.media_path("factory1", "cam1", "2026-11-21", "120000-0000000001.ts") == PATH


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"cid": "QmNotACid"}, "cid", id="cid"),
        pytest.param({"cid": CID + "/x"}, "cid", id="cid-path"),
        pytest.param({"expires": 0}, "expires", id="expires-zero"),
        pytest.param({"expires": -5}, "expires", id="expires-negative"),
        pytest.param({"expires": True}, "expires", id="expires-bool"),
        pytest.param({"expires": 1.5}, "expires", id="expires-float"),
        pytest.param({"secret": ""}, "secret", id="secret"),
    ],
)
def test_signed_url_refuses(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"path": PATH, "cid": CID, "secret": SECRET, "expires": NOW}
    with pytest.raises(ValueError, match=message):
        links.signed_url(**{**args, **kwargs})  # type: ignore[arg-type]


def test_signer_gives_exactly_what_signed_url_gives() -> None:
    secret = links.new_secret()
    signer = links.Signer("factory1", "cam.1", secret=secret, expires=1_900_000_000)
    for day, filename in (("2026-11-21", "120000-0000000001.ts"), ("2026-11-22", "000002-0000043201.ts")):
        path = links.media_path("factory1", "cam.1", day, filename)
        assert signer.url(day, filename, CID) == links.signed_url(
            path, CID, secret=secret, expires=1_900_000_000
        )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("2026-02-30", "a.ts", CID), "day"),
        (("2026-11-21", "../a.ts", CID), "file name"),
        (("2026-11-21", "a.ts", "Qm/../x"), "cid"),
        (("2026-11-21", "a.ts", ""), "cid"),
    ],
)
def test_signer_refuses_bad_parts(args: tuple[str, str, str], message: str) -> None:
    signer = links.Signer("factory1", "cam1", secret="s" * 43, expires=1_900_000_000)
    with pytest.raises(ValueError, match=message):
        signer.url(*args)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"factory": "..", "device": "cam1", "secret": "s", "expires": 1},
        {"factory": "f", "device": "a/b", "secret": "s", "expires": 1},
        {"factory": "f", "device": "d", "secret": "", "expires": 1},
        {"factory": "f", "device": "d", "secret": "s", "expires": 0},
    ],
)
def test_signer_refuses_bad_camera_secret_or_expiry(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"name|secret|expires"):
        links.Signer(**kwargs)  # type: ignore[arg-type]


def test_new_secret_is_accepted_by_render() -> None:
    secret = links.new_secret()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", secret)
    assert secret != links.new_secret()
    assert secret in _render(link_secret=secret)


# --- nginx.conf rendering ----------------------------------------------------------------------

GOOD: dict[str, object] = {
    "listen": "127.0.0.1:8080",
    "state_dir": Path("/var/lib/camswarm/nginx"),
    "media_root": Path("/srv/camswarm/store"),
    "kubo_gateway": "http://127.0.0.1:8081",
    "gateways": ["127.0.0.1:9001", "gw2.example.net:9002", "[::1]:9003"],
    "link_secret": SECRET,
}


def _render(**changes: object) -> str:
    return nginx_conf.render(**{**GOOD, **changes})  # type: ignore[arg-type]


def test_render_fills_every_placeholder() -> None:
    text = _render()
    assert "server 127.0.0.1:9001 max_fails=2 fail_timeout=10s;" in text
    assert "server gw2.example.net:9002 max_fails=2 fail_timeout=10s;" in text
    assert "server [::1]:9003 max_fails=2 fail_timeout=10s;" in text
    assert f'secure_link_md5 "$secure_link_expires$uri$arg_cid {SECRET}";' in text
    assert "secure_link $arg_md5,$arg_expires;" in text
    assert "server 127.0.0.1:8081;" in text  # Kubo upstream, without the http:// of the devnet form
    assert "listen 127.0.0.1:8080;" in text
    assert "root /srv/camswarm/store;" in text
    assert "pid /var/lib/camswarm/nginx/nginx.pid;" in text
    assert "daemon off;" in text
    config = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "$$" not in config
    assert not re.search(r"\$(listen|state_dir|media_root|kubo_gateway|upstream_servers|link_secret)", config)
    assert "\nuser " not in text


def test_render_playlist_cache_key_holds_the_session() -> None:
    keys = re.findall(r"proxy_cache_key (.*);", _render())
    playlist_keys = [k for k in keys if "$request_uri" in k]
    assert len(playlist_keys) == 2  # /live/ (live and day playlists) and /replay/
    assert all("$cookie_camswarm_session" in k for k in playlist_keys)


def test_render_keys_are_never_cached() -> None:
    text = _render()
    match = re.search(r"location \^~ /keys/ \{(.*?)\n        \}", text, re.S)
    assert match is not None, "segment keys have their own location"
    block = match.group(1)
    for directive in ("proxy_cache off;", "proxy_no_cache 1;", "proxy_cache_bypass 1;", "no-store, private"):
        assert directive in block
    # No server-level cache that the location could inherit.
    server = text[text.index("server {") :]
    assert not re.search(r"^        proxy_cache ", server, re.M)


def test_render_gzip_types_are_text_only() -> None:
    match = re.search(r"gzip_types([^;]*);", _render())
    assert match is not None
    types = match.group(1).split()
    assert "application/vnd.apple.mpegurl" in types
    assert not [t for t in types if t.startswith("video/")]


def test_render_worker_user() -> None:
    assert "\nuser camswarm;\n" in _render(worker_user="camswarm")
    with pytest.raises(ConfigError) as caught:
        _render(worker_user="root; daemon on")
    assert caught.value.key == "worker_user"


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        pytest.param({"listen": "8080"}, "listen", id="listen-no-host"),
        pytest.param({"listen": "127.0.0.1:0"}, "listen", id="listen-port-0"),
        pytest.param({"listen": "127.0.0.1:70000"}, "listen", id="listen-port-big"),
        pytest.param({"listen": "127.0.0.1:80; include /etc/passwd"}, "listen", id="listen-injection"),
        pytest.param({"listen": "http://127.0.0.1:80"}, "listen", id="listen-url"),
        pytest.param({"listen": "999.1.1.1:80"}, "listen", id="listen-bad-ipv4"),
        pytest.param({"listen": "[::g]:80"}, "listen", id="listen-bad-ipv6"),
        pytest.param({"state_dir": Path("relative/dir")}, "state_dir", id="state-relative"),
        pytest.param({"state_dir": Path("/a/../b")}, "state_dir", id="state-dotdot"),
        pytest.param({"state_dir": Path("/tmp/with space")}, "state_dir", id="state-space"),
        pytest.param({"state_dir": Path("/tmp/x;y")}, "state_dir", id="state-semicolon"),
        pytest.param({"media_root": Path("/srv/$store")}, "media_root", id="media-dollar"),
        pytest.param({"media_root": Path('/srv/"q"')}, "media_root", id="media-quote"),
        pytest.param({"media_root": "store"}, "media_root", id="media-relative"),
        pytest.param({"kubo_gateway": "127.0.0.1"}, "kubo_gateway", id="kubo-no-port"),
        pytest.param({"kubo_gateway": "http://127.0.0.1:8081/ipfs"}, "kubo_gateway", id="kubo-path"),
        pytest.param({"kubo_gateway": "https://127.0.0.1:8081"}, "kubo_gateway", id="kubo-https"),
        pytest.param({"gateways": []}, "gateways", id="gateways-empty"),
        pytest.param({"gateways": "127.0.0.1:9001"}, "gateways", id="gateways-string"),
        pytest.param({"gateways": ["127.0.0.1:9001", "bad host:1"]}, "gateways[1]", id="gateways-bad"),
        pytest.param({"gateways": ["127.0.0.1:9001", "127.0.0.1:9001"]}, "gateways[1]", id="gateways-dup"),
        pytest.param({"gateways": ["127.0.0.1:9001", 9002]}, "gateways[1]", id="gateways-int"),
        pytest.param({"link_secret": ""}, "link_secret", id="secret-empty"),
        pytest.param({"link_secret": "short"}, "link_secret", id="secret-short"),
        pytest.param({"link_secret": "a" * 40 + '";'}, "link_secret", id="secret-quote"),
        pytest.param({"link_secret": "a" * 40 + " x"}, "link_secret", id="secret-space"),
        pytest.param({"link_secret": "a" * 40 + "$uri"}, "link_secret", id="secret-dollar"),
    ],
)
def test_render_refuses(changes: dict[str, object], key: str) -> None:
    with pytest.raises(ValueError, match=re.escape(key)) as caught:
        _render(**changes)
    assert isinstance(caught.value, ConfigError)
    assert caught.value.key == key
    secret = changes.get("link_secret")
    if isinstance(secret, str) and secret:
        assert secret not in str(caught.value), "a secret must never be echoed"


def test_render_missing_template_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="template"):
        nginx_conf.render(**GOOD, template=tmp_path / "absent.template")  # type: ignore[arg-type]


def test_state_subdirs_cover_the_template() -> None:
    state = "/var/lib/camswarm/nginx"
    named = set(re.findall(re.escape(state) + r"/([A-Za-z0-9_./]+)", _render()))
    files = {"nginx.pid", "logs/error.log", "logs/access.log"}
    dirs = named - files
    assert dirs
    assert dirs <= set(nginx_conf.STATE_SUBDIRS)
    assert {str(Path(f).parent) for f in files} - {"."} <= set(nginx_conf.STATE_SUBDIRS)


def test_write_config_modes(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        state = tmp_path / "state"
        path = state / "nginx.conf"
        nginx_conf.write_config(path, "first\n")
        nginx_conf.write_config(path, "second\n")
    finally:
        os.umask(old_umask)
    assert path.read_text() == "second\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for name in nginx_conf.STATE_SUBDIRS:
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o700, name
    assert sorted(p.name for p in state.iterdir() if p.is_file()) == ["nginx.conf"]


def test_write_config_separate_state_dir(tmp_path: Path) -> None:
    nginx_conf.write_config(tmp_path / "etc" / "nginx.conf", "x\n", state_dir=tmp_path / "var")
    assert (tmp_path / "var" / "cache" / "segments").is_dir()
    assert not (tmp_path / "etc" / "logs").exists()

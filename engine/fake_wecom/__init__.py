"""A local, faithful-enough fake of WeCom's server API, served over real HTTP."""

from engine.fake_wecom.app import create_app
from engine.fake_wecom.state import FakeConfig, FakeWeCom

__all__ = ["FakeConfig", "FakeWeCom", "create_app"]

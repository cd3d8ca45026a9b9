"""WeCom server API client."""

from activities.wecom.client import WeComClient, WeComError

__all__ = ["WeComClient", "WeComError"]

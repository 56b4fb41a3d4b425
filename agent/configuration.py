"""Settings of the agent: step and repair limits, the as-of policy, tool output bounds.

:class:`AgentSettings` is the ``agent`` section of the one settings root, ``ehr_agent.tools.settings``
(it lives there so that tools and retrieval read the same root without importing the agent). Read from
keyword arguments or ``EHR_AGENT_*`` environment variables, so the same values reach the CLI, a notebook
and ``langgraph dev`` (which builds the graph from the environment, see :func:`agent.graph.make_graph`).
Every variable is listed in ``docs/settings.md``; an unknown ``EHR_AGENT_*`` variable is an error.
"""

from __future__ import annotations

from ehr_agent.tools.settings import AgentSettings, Settings, SettingsError, load_settings

__all__ = ["AgentSettings", "Settings", "SettingsError", "load_settings"]

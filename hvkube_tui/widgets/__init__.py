"""Widgets of the dashboard: keyed tables, the detail pane, the thumbnail, dialogs and forms."""

"""Realtime voice: WebRTC calls relayed through the gateway, the WebSocket relay, client secrets.

Imported only by app/blueprints/realtime.py and the worker-exit hook, never on the chat path.
"""

"""Wire profiles: the native protocol, the OpenAI Realtime API and Twilio Media Streams on one
session.
"""

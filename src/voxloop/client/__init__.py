"""The client side: stream a WAV to a server like a live microphone (`talk`), over any wire
(`wires`).
"""

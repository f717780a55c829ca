"""Running the process: the background task, lifecycle phases, systemd notify, the app's Redis
client.
"""

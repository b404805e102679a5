"""LINE Messaging API emulator: the API server (`server`) and signed webhooks (`webhooks`)."""

from emulators.messaging.server import Delivery, Fault, MessagingEmulator, running_emulator, serve

__all__ = ["Delivery", "Fault", "MessagingEmulator", "running_emulator", "serve"]

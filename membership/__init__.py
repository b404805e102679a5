"""Membership: LINE friends, binding, coupons and the beacon greeting (the lead's House move fills this room)."""

"""Membership: LINE friends, binding, coupons and the beacon greeting."""

"""Chat channels: approval cards with buttons, and replies in their threads."""

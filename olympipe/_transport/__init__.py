"""Moving chunks of items between processes: channels and their frame format."""

"""The protocol core: every verb of the clients as a flow of typed commands, without I/O.

A flow (``commands.Flow``) yields commands and receives their outcomes; the two executors (``Kontext``,
``AsyncKontext``) perform them: HTTP with httpx (``transport``), files, sleeps. Nothing here imports httpx or touches
the file system. The modules:

- ``commands``: the commands and their outcomes; ``send``: the one send loop (retries, by ``RetryPolicy``);
- ``queue``: submit (and recovery of a lost answer, ``recovery``), status, result, cancel; ``wait``: the status
  stream, polling (``polling``) and the result; ``save``: writing results; ``storage``: uploads; ``direct``: fal's
  synchronous endpoint;
- ``verbs``: every verb composed from those, its arguments checked first (``inputs``);
- ``hosts``: fal's hosts and where a key may go; ``urls``: where each queue call goes; ``answers``: what an
  answer means (the error it raises); ``images``: image bytes and data URIs; ``settings``: what flows read.
"""

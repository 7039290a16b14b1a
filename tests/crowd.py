# A crowd of idle TCP connections, for the admission tests and the benchmark:
# IDLE sockets from ADDRESSES loopback source addresses (127.1.x.y) that send
# nothing, and TRICKLE more (from 127.2.0.x) that send a header one byte a
# second and never finish it. Bounded: it stops after SECONDS, on SIGTERM, or
# when its standard input, if a pipe, closes; then it prints how many of the
# idle sockets the server had closed.
# Python rather than Deno: binding a source address needs a Deno net
# permission for each address, and Deno's --allow-net takes no address blocks.
# Usage: python3 crowd.py PORT IDLE ADDRESSES TRICKLE SECONDS
import os
import resource
import select
import signal
import socket
import stat
import sys
import time

port, idle, addresses, trickle, seconds = (int(arg) for arg in sys.argv[1:6])
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def connect(source):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(10)
    sock.connect(('127.0.0.1', port))
    return sock


crowd = []
for i in range(idle):
    a = i % addresses
    crowd.append(connect('127.1.%d.%d' % (a // 250, 1 + a % 250)))
trickling = [connect('127.2.0.%d' % (1 + t)) for t in range(trickle)]
print('ready', flush=True)

stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
piped = stat.S_ISFIFO(os.fstat(0).st_mode)

# Fifteen of a header's sixteen digits, one a second: the header never ends.
header = b'000000000001000'
end = time.monotonic() + seconds
sent = 0
while time.monotonic() < end and not stopping:
    ready, _, _ = select.select([sys.stdin] if piped else [], [], [], 1.0)
    if ready and not sys.stdin.readline():
        break
    if sent < len(header):
        for sock in trickling:
            try:
                sock.send(header[sent:sent + 1])
            except OSError:
                pass
        sent += 1

closed = 0
for sock in crowd:
    sock.setblocking(False)
    try:
        closed += sock.recv(1) == b''
    except BlockingIOError:
        pass
    except OSError:
        closed += 1
print('closed', closed, flush=True)

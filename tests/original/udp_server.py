# The tutorial's UDP server, unchanged but for the port from argv, a
# "listening" line: recv(1024), print(data.decode()). Run it with python3 -u
# to see each line at once; without, stdout to a file is block-buffered as
# the original was.
# Usage: python3 udp_server.py PORT
import socket
import sys

if __name__ == '__main__':
    ip_port = ('127.0.0.1', int(sys.argv[1]))
    sk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    sk.bind(ip_port)
    print('listening on {0}:{1}'.format(*sk.getsockname()), flush=True)
    while True:
        data = sk.recv(1024)
        print(data.decode())

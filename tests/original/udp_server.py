# The tutorial's UDP server, unchanged but for the port from argv, a
# "listening" line and flushing each print: recv(1024), print(data.decode()).
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
        print(data.decode(), flush=True)

# The tutorial's UDP client, unchanged but for the port from argv: prompts,
# strips each line, stops at "exit".
# Usage: python3 udp_client.py PORT
import socket
import sys

if __name__ == '__main__':
    ip_port = ('127.0.0.1', int(sys.argv[1]))
    sk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    while True:
        inp = input('数据：').strip()
        if inp == 'exit':
            break
        sk.sendto(bytes(inp, encoding='utf8'), ip_port)
    sk.close()

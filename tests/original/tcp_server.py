# Python 3 port of the tutorial's TCP server (originally Python 2), kept as
# close to the original algorithm as runs: one connection at a time, a single
# recv(16) for the header, 4096-byte recv loop that counts 4096 per recv
# whatever it returned, each body saved raw as SAVE_DIR/00000, 00001, ...
# Changes: address from argv (never the original's hard-coded host), int()
# instead of eval(), print of each chunk dropped, a "listening" line.
# Usage: python3 tcp_server.py PORT SAVE_DIR [HOST]   (HOST 127.0.0.1 by default)
import os
import socket
import sys
import time

m_serv_ip = sys.argv[3] if len(sys.argv) > 3 else '127.0.0.1'
m_serv_port = int(sys.argv[1])
m_len_header = 16
m_len_buf = 4096
m_save_dir = sys.argv[2]


def read_header(header):
    content = header[:m_len_header].lstrip(b'0')
    assert content != b''
    return int(content)


def server():
    t0 = time.perf_counter()
    sk = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    sk.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sk.bind((m_serv_ip, m_serv_port))
    sk.listen(5)
    print('listening on {0}:{1}'.format(*sk.getsockname()), flush=True)

    cnt = 0
    while True:
        conn, addr = sk.accept()
        data = conn.recv(m_len_header)
        len_data = read_header(data)
        contents = []
        len_left = len_data
        while len_left > 0:
            data = conn.recv(m_len_buf)
            contents.append(data)
            len_left -= m_len_buf
        conn.close()

        if not os.path.isdir(m_save_dir):
            os.mkdir(m_save_dir)
        save_path = os.path.join(m_save_dir, str(cnt).zfill(5))
        with open(save_path, 'wb') as f:
            f.write(b''.join(contents))
        cnt += 1
        print('num finish: {0} finish, time elapsed: {1}'.format(cnt, time.perf_counter() - t0), flush=True)


if __name__ == '__main__':
    server()

# Python 3 port of the tutorial's TCP client, same algorithm: a new
# connection per file, header, name and base64 body as three sendall calls,
# name = file name .rstrip('.jpg'), only *.jpg, in os.listdir order.
# Changes: address and folder from argv (never the original's hard-coded
# host), time.perf_counter for the removed time.clock, unused numpy dropped.
# Usage: python3 tcp_client.py HOST PORT IMG_DIR [BATCH_SIZE MAX_BATCH]
import base64
import os
import socket
import sys
import time

m_serv_ip = sys.argv[1]
m_serv_port = int(sys.argv[2])


def init_socket(serv_ip, serv_port):
    sk = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    sk.connect((serv_ip, serv_port))
    sk.settimeout(50)
    return sk


def send_socket(sk, b64, name):
    len_content = len(b64) + len(name)
    sk.sendall(bytes(str(len_content).zfill(16), encoding='utf-8'))
    sk.sendall(bytes(name, encoding='utf-8'))
    sk.sendall(b64)
    sk.close()


def img_to_b64(img_path):
    assert os.path.isfile(img_path)
    with open(img_path, 'rb') as f:
        img = f.read()
    return base64.b64encode(img)


def get_img_names(img_dir):
    assert os.path.isdir(img_dir)
    names_all = os.listdir(img_dir)
    names = [name for name in names_all if name.endswith('.jpg')]
    print('dir {0}: files {1}, images {2}'.format(img_dir, len(names_all), len(names)))
    return names


def send_batch(img_dir, img_names, start_idx, batch_num=10):
    t0 = time.perf_counter()
    for cnt, img_name in enumerate(img_names[start_idx: start_idx + batch_num]):
        img_path = os.path.join(img_dir, img_name)
        b64 = img_to_b64(img_path)
        sk = init_socket(m_serv_ip, m_serv_port)
        send_socket(sk, b64, img_name.rstrip('.jpg'))
    print('batch finished, num send: {0}, time elapsed: {1}'.format(batch_num, time.perf_counter() - t0))


def client(img_dir, batch_size, max_batch):
    assert os.path.isdir(img_dir)
    t0 = time.perf_counter()
    img_names = get_img_names(img_dir)
    num_img = len(img_names)
    num_finish = 0
    start_idx = 0
    num_batch = 0
    while num_finish < num_img:
        max_num = min(batch_size, num_img - num_finish)
        send_batch(img_dir, img_names, start_idx, max_num)
        start_idx += max_num
        num_finish += max_num
        num_batch += 1
        if num_batch >= max_batch:
            break
    print('client finish, time elapsed: {0}'.format(time.perf_counter() - t0))


if __name__ == '__main__':
    batch_size = int(sys.argv[4]) if len(sys.argv) > 4 else 20
    max_batch = int(sys.argv[5]) if len(sys.argv) > 5 else 10000
    client(sys.argv[3], batch_size, max_batch)

"""A DNS server for one name, for .ci/packaging.sh: answers A queries for NAME with 127.0.0.1,
AAAA for NAME with no address, anything else with NXDOMAIN. It lets the check prove that the
image's statically linked binary resolves host names through /etc/resolv.conf, as it must for
Services in a cluster, with no NSS modules in the image.

    python3 dns-responder.py NAME PORT
"""

import socket
import struct
import sys


def main() -> None:
    name = sys.argv[1].rstrip(".").lower()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", int(sys.argv[2])))
    print("ready", flush=True)
    while True:
        query, peer = sock.recvfrom(512)
        if len(query) < 17:
            continue
        ident, _flags, questions = struct.unpack(">HHH", query[:6])
        labels, at = [], 12
        while at < len(query) and query[at] != 0:
            labels.append(query[at + 1 : at + 1 + query[at]].decode("ascii", "replace"))
            at += query[at] + 1
        question = query[12 : at + 5]
        (qtype,) = struct.unpack(">H", query[at + 1 : at + 3])
        asked = ".".join(labels).lower()
        print(f"query {qtype} {asked}", flush=True)
        answers = b""
        rcode = 0
        if questions != 1 or asked != name:
            rcode = 3  # NXDOMAIN
        elif qtype == 1:
            answers = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 5, 4) + socket.inet_aton("127.0.0.1")
        header = struct.pack(">HHHHHH", ident, 0x8180 | rcode, 1, 1 if answers else 0, 0, 0)
        sock.sendto(header + question + answers, peer)


if __name__ == "__main__":
    main()

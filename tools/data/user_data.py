"""The user data directory arp-train reads speaker-encoder weights from (src/speaker/weights.rs):
$ARP_TRAIN_DATA, else $XDG_DATA_HOME/arp-train, else ~/.local/share/arp-train."""
import os


def data_dir():
    if os.environ.get("ARP_TRAIN_DATA"):
        return os.environ["ARP_TRAIN_DATA"]
    if os.environ.get("XDG_DATA_HOME"):
        return os.path.join(os.environ["XDG_DATA_HOME"], "arp-train")
    return os.path.join(os.path.expanduser("~"), ".local", "share", "arp-train")


def default_weights(file_name):
    return os.path.join(data_dir(), "speaker-encoders", file_name)

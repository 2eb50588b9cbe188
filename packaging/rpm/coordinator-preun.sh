# Erase (not upgrade): stop and disable. The database and keys in /var/lib/tether are kept.
if [ "$1" = 0 ]; then
    if [ -d /run/systemd/system ]; then
        systemctl stop tether.service >/dev/null 2>&1 || :
        systemctl disable tether.service >/dev/null 2>&1 || :
    else
        /etc/init.d/tether stop >/dev/null 2>&1 || :
        command -v chkconfig >/dev/null 2>&1 && chkconfig --del tether || :
    fi
fi

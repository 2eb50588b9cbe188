# Erase (not upgrade): stop and disable. State is kept: rm -rf /var/lib/tether-agent to forget the registration.
if [ "$1" = 0 ]; then
    if [ -d /run/systemd/system ]; then
        systemctl stop tether-agent.service >/dev/null 2>&1 || :
        systemctl disable tether-agent.service >/dev/null 2>&1 || :
    else
        /etc/init.d/tether-agent stop >/dev/null 2>&1 || :
        command -v chkconfig >/dev/null 2>&1 && chkconfig --del tether-agent || :
    fi
fi

@echo off
rem Start the container gateway on a Windows host (the counterpart of ISIS's start_gwcontainer.bat).
rem
rem It serves the host's PVs to an archiver running in a container (Rancher Desktop, Docker
rem Desktop or Podman, all of which lack host networking on Windows). The container reaches it
rem at host.docker.internal:%GW_SPORT% (EPICS_CA_ADDR_LIST in compose.yaml).
rem
rem Edit the variables below, or set them before calling this script. Run it from a service
rem wrapper (WinSW, see docs\deployment.md) to have it start with Windows.
setlocal
if "%PVARCHIVER%"=="" set PVARCHIVER=pvarchiver
if "%GW_HOME%"=="" set GW_HOME=%~dp0
rem where the IOCs are: ISIS-style hosts bind every IOC to loopback and beacon to 127.255.255.255
if "%GW_CIP%"=="" set GW_CIP=127.255.255.255
rem the address the container can reach: the host's own address (not 127.0.0.1); find it with
rem ipconfig (the vEthernet (WSL) adapter for Rancher Desktop / Docker Desktop)
if "%GW_SIP%"=="" set GW_SIP=0.0.0.0
rem a port of its own, so it never competes with IOCs for 5064 (ISIS uses 9264 too)
if "%GW_SPORT%"=="" set GW_SPORT=9264
if "%GW_PREFIX%"=="" set GW_PREFIX=GWCONTAINER

"%PVARCHIVER%" gateway ^
    -pvlist "%GW_HOME%gwcontainer.pvlist" ^
    -access "%GW_HOME%gwcontainer.acf" ^
    -cip "%GW_CIP%" ^
    -sip "%GW_SIP%" ^
    -sport %GW_SPORT% ^
    -prefix %GW_PREFIX%
exit /b %ERRORLEVEL%

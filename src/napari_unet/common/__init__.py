"""What every layer uses: argument checks (`checks`), arrays and axes strings
(`arrays`) and the progress events of long jobs (`progress`).
"""
